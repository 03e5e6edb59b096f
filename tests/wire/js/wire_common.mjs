// What peer.mjs needs besides js-libp2p: the few CBOR items of Hive's direct
// protocol and the reading of Hive's pubsub envelope.
//
// The direct protocol is rust-libp2p's request-response `cbor` codec: the
// request is one CBOR item written then the write side closed, the response
// one CBOR item read to the end of the stream. Hive's request is the map
// {"id": text, "data": bytes}, its answer {"id": text}.

function head (major, n) {
  if (n < 24) return Buffer.from([(major << 5) | n])
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n])
  if (n < 0x10000) {
    const b = Buffer.alloc(3)
    b[0] = (major << 5) | 25
    b.writeUInt16BE(n, 1)
    return b
  }
  if (n < 0x100000000) {
    const b = Buffer.alloc(5)
    b[0] = (major << 5) | 26
    b.writeUInt32BE(n, 1)
    return b
  }
  throw new Error('too long')
}

// Unsigned integers, Uint8Array (byte string), string (text), arrays, plain objects.
export function cborEncode (value) {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return head(0, value)
  if (value instanceof Uint8Array) return Buffer.concat([head(2, value.length), value])
  if (typeof value === 'string') {
    const raw = Buffer.from(value, 'utf8')
    return Buffer.concat([head(3, raw.length), raw])
  }
  if (Array.isArray(value)) return Buffer.concat([head(4, value.length), ...value.map(cborEncode)])
  if (value && typeof value === 'object') {
    const entries = Object.entries(value)
    return Buffer.concat([head(5, entries.length), ...entries.flatMap(([k, v]) => [cborEncode(k), cborEncode(v)])])
  }
  throw new TypeError(`cannot encode ${typeof value}`)
}

export function cborDecode (bytes) {
  const buf = Buffer.from(bytes)
  const [value, end] = decode(buf, 0)
  if (end !== buf.length) throw new Error(`${buf.length - end} trailing bytes after the CBOR item`)
  return value
}

function decode (buf, i) {
  const first = buf[i++]
  const major = first >> 5
  const info = first & 31
  let n
  if (info < 24) n = info
  else if (info === 24) { n = buf.readUInt8(i); i += 1 } else if (info === 25) { n = buf.readUInt16BE(i); i += 2 } else if (info === 26) { n = buf.readUInt32BE(i); i += 4 } else if (info === 27) { n = Number(buf.readBigUInt64BE(i)); i += 8 } else throw new Error(`unsupported CBOR head 0x${first.toString(16)}`)
  switch (major) {
    case 0: return [n, i]
    case 2:
    case 3: {
      if (i + n > buf.length) throw new Error('truncated CBOR string')
      const raw = buf.subarray(i, i + n)
      return [major === 2 ? Uint8Array.from(raw) : raw.toString('utf8'), i + n]
    }
    case 4: {
      const out = []
      for (let k = 0; k < n; k++) { let v; [v, i] = decode(buf, i); out.push(v) }
      return [out, i]
    }
    case 5: {
      const out = {}
      for (let k = 0; k < n; k++) {
        let key, v;
        [key, i] = decode(buf, i);
        [v, i] = decode(buf, i)
        out[key] = v
      }
      return [out, i]
    }
    default: throw new Error(`unsupported CBOR major type ${major}`)
  }
}

const MAGIC = Buffer.from([0, 0x68, 0x69, 0x76, 0x65, 1]) // 00 'hive' 01

// {id, payload} if `bytes` is Hive's pubsub envelope, else null.
export function unwrapEnvelope (bytes) {
  const buf = Buffer.from(bytes)
  if (buf.length < MAGIC.length + 1 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return null
  const n = buf[MAGIC.length]
  const rest = buf.subarray(MAGIC.length + 1)
  if (n === 0 || rest.length < n) return null
  return { id: rest.subarray(0, n).toString('latin1'), payload: rest.subarray(n) }
}
