// A js-libp2p node (npm `libp2p`) as a wire peer of a real Hive host.
//
// Run by tests/wire/run with the host's API in $HIVE_HTTP. Dials the host's
// daemon over TCP + Noise + Yamux and prints one line per case
// (`PASS|FAIL|SKIP js.<case> <detail>`):
//
//   connect, identify, ping, gossip-host-to-peer, gossip-peer-to-host, direct
//
// Exits 1 when any case failed. Nothing here asserts a timing: every wait is a
// deadline for something that must happen, never a measurement.
import './node20.mjs'
import { randomBytes } from 'node:crypto'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import WebSocket from 'ws'
import { cborEncode, cborDecode, unwrapEnvelope } from './wire_common.mjs'

const DIRECT = '/hive/direct/1.0.0'
const API = process.env.HIVE_HTTP.replace(/\/+$/, '')

let failed = 0
function record (verdict, name, detail = '') {
  if (verdict === 'FAIL') failed++
  console.log(`${verdict} js.${name} ${detail}`.trimEnd())
}

// Runs one case: `body` returns [verdict, detail] or throws (a FAIL).
async function runCase (name, body) {
  try {
    const [verdict, detail] = await body()
    record(verdict, name, detail)
    return verdict === 'PASS'
  } catch (e) {
    record('FAIL', name, `${e?.name ?? 'Error'}: ${e?.message ?? e}`)
    return false
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function deadline (ms) {
  return AbortSignal.timeout(ms)
}

async function within (ms, what, promise) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms / 1000} s`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function http (method, path, body) {
  const res = await fetch(API + path, { method, body, signal: AbortSignal.timeout(10000) })
  const text = await res.text()
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
  return text ? JSON.parse(text) : null
}

// Every frame of the host's /api/events WebSocket, collected from the start.
class Events {
  constructor () {
    this.frames = []
    this.waiters = new Set()
  }

  open () {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(API.replace(/^http:/, 'ws:') + '/api/events')
      this.ws.on('open', resolve)
      this.ws.on('error', reject)
      this.ws.on('message', (raw) => {
        const frame = JSON.parse(raw.toString())
        this.frames.push(frame)
        for (const w of this.waiters) w()
      })
    })
  }

  // The first frame that matches, or null after `ms`.
  waitFor (pred, ms) {
    return new Promise((resolve) => {
      const check = () => {
        const f = this.frames.find(pred)
        if (f) done(f)
      }
      const timer = setTimeout(() => done(null), ms)
      const done = (f) => {
        clearTimeout(timer)
        this.waiters.delete(check)
        resolve(f)
      }
      this.waiters.add(check)
      check()
    })
  }

  close () {
    this.ws?.terminate()
  }
}

// The gossipsub protocol id this connection negotiated with the host.
const meshsub = (conn) => [...new Set(conn.streams.map((s) => s.protocol).filter((p) => p?.startsWith('/meshsub/')))].join(',') || '?'
const b64 = (bytes) => Buffer.from(bytes).toString('base64')
const hex = (n) => randomBytes(n).toString('hex')
const concat = (parts) => Buffer.concat(parts.map((p) => Buffer.from(p)))

async function main () {
  const status = await http('GET', '/api/status')
  const hiveId = status.peer_id
  let addr = status.listen_addrs.find((a) => a.includes('/tcp/'))
  if (!addr.includes('/p2p/')) addr += `/p2p/${hiveId}`

  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({ emitSelf: false })
    }
  })
  const me = node.peerId.toString()
  const pubsub = node.services.pubsub
  const events = new Events()
  await events.open()
  const topic = `wire-js-${hex(4)}`
  const names = ['identify', 'ping', 'gossip-host-to-peer', 'gossip-peer-to-host', 'direct']

  try {
    // js-libp2p identifies every new connection itself (one identify stream
    // per connection at a time): take that result rather than a second stream.
    const identified = new Promise((resolve) => {
      node.addEventListener('peer:identify', (evt) => {
        if (evt.detail.peerId.toString() === hiveId) resolve(evt.detail)
      })
    })

    // (1) connect
    let conn
    const connected = await runCase('connect', async () => {
      conn = await node.dial(multiaddr(addr), { signal: deadline(15000) })
      if (conn.remotePeer.toString() !== hiveId) {
        return ['FAIL', `connected to ${conn.remotePeer}, expected ${hiveId}`]
      }
      return ['PASS', `${me} -> ${addr} (tcp, ${conn.encryption}, ${conn.multiplexer})`]
    })
    if (!connected) {
      for (const n of names) record('FAIL', n, 'no connection to the host')
      return
    }

    // (2) identify, both ways
    await runCase('identify', async () => {
      const result = await within(15000, 'identify of the host', identified)
      const problems = []
      const agent = result.agentVersion ?? ''
      if (!agent.startsWith('hive-p2pd/')) problems.push(`agent version ${JSON.stringify(agent)} does not start with hive-p2pd/`)
      for (const p of ['/ipfs/id/1.0.0', '/ipfs/ping/1.0.0', '/meshsub/1.1.0', DIRECT]) {
        if (!result.protocols.includes(p)) problems.push(`${p} not in the protocols ${JSON.stringify(result.protocols)}`)
      }
      let seen = false
      for (const end = Date.now() + 15000; !seen && Date.now() < end;) {
        seen = (await http('GET', '/api/peers')).some((p) => p.peer_id === me)
        if (!seen) await sleep(200)
      }
      if (!seen) problems.push('GET /api/peers never listed this peer')
      if (problems.length) return ['FAIL', problems.join('; ')]
      return ['PASS', `agent ${agent}, ${result.protocols.length} protocols, listed by GET /api/peers`]
    })

    // (3) ping
    await runCase('ping', async () => {
      const rtt = await node.services.ping.ping(conn.remotePeer, { signal: deadline(15000) })
      return ['PASS', `32-byte round trip on /ipfs/ping/1.0.0 (${rtt} ms)`]
    })

    // Both sides subscribe; wait until each sees the other on the topic.
    await http('POST', `/api/topics/${topic}/subscribe`)
    const received = []
    let onMessage = () => {}
    pubsub.addEventListener('message', (evt) => {
      if (evt.detail.topic === topic) {
        received.push(evt.detail)
        onMessage()
      }
    })
    pubsub.subscribe(topic)
    let hostSees = false
    let peerSees = false
    for (const end = Date.now() + 20000; !(hostSees && peerSees) && Date.now() < end;) {
      hostSees = (await http('GET', '/api/topics')).some((t) => t.topic === topic && t.peers >= 1)
      peerSees = pubsub.getSubscribers(topic).some((p) => p.toString() === hiveId)
      if (!(hostSees && peerSees)) await sleep(200)
    }
    const meshed = hostSees && peerSees
    const notMeshed = `subscriptions not exchanged within 20 s (host sees a peer on ${topic}: ${hostSees}, this peer sees the host on it: ${peerSees})`

    // (4) gossipsub host -> peer: exact bytes
    await runCase('gossip-host-to-peer', async () => {
      if (!meshed) return ['FAIL', notMeshed]
      const sent = concat([Buffer.from('hive->js '), [0, 1, 0xfe, 0xff], Buffer.from(` ${hex(8)}`)])
      await http('POST', `/api/topics/${topic}/publish?envelope=false`, sent)
      if (received.length === 0) {
        await within(30000, 'a message from the host', new Promise((resolve) => { onMessage = resolve }))
      }
      const msg = received[0]
      const from = msg.type === 'signed' ? msg.from.toString() : '(unsigned)'
      const got = Buffer.from(msg.data)
      if (from !== hiveId) return ['FAIL', `message authored by ${from}, expected the host ${hiveId}`]
      if (got.equals(sent)) return ['PASS', `${sent.length} bytes exactly, authored by the host, over ${meshsub(conn)}`]
      const env = unwrapEnvelope(got)
      if (env && Buffer.from(env.payload).equals(sent)) {
        return ['FAIL', `got ${got.length} bytes, not the ${sent.length} published: Hive's pubsub envelope ` +
          `(00 'hive' 01, id length, id '${env.id}') precedes the payload: the host was asked for a ` +
          'plain publish (?envelope=false) but wrapped it anyway']
      }
      return ['FAIL', `got ${got.toString('hex')}, expected ${sent.toString('hex')}`]
    })

    // (5) gossipsub peer -> host: seen on /api/events
    await runCase('gossip-peer-to-host', async () => {
      const sent = concat([Buffer.from('js->hive '), [0, 1, 0xfe, 0xff], Buffer.from(` ${hex(8)}`)])
      const data = b64(sent)
      const ours = (f) => f.type === 'message' && f.topic === topic && f.data === data
      // One publish, as an application would make it once both sides have
      // seen each other's subscription: it must arrive, and arrive once.
      await pubsub.publish(topic, sent)
      const frame = await events.waitFor(ours, 30000)
      const copies = events.frames.filter(ours).length
      if (!frame) return ['FAIL', 'the one publish made after the subscriptions were exchanged did not reach /api/events within 30 s']
      if (copies !== 1) return ['FAIL', `the message arrived ${copies} times`]
      if (frame.from !== me) return ['FAIL', `frame from ${frame.from}, expected ${me}`]
      return ['PASS', `${sent.length} bytes, from = this peer, over ${meshsub(conn)}`]
    })

    // (6) direct stream on /hive/direct/1.0.0
    await runCase('direct', async () => {
      const id = `js-${hex(6)}`
      const data = concat([Buffer.from('direct from js '), [0, 0xff], Buffer.from(` ${hex(4)}`)])
      const stream = await node.dialProtocol(conn.remotePeer, DIRECT, { signal: deadline(20000) })
      // sink() ends by closing our write side: the codec reads the request to its end.
      await stream.sink([cborEncode({ id, data })])
      const chunks = []
      await within(20000, 'the ack', (async () => {
        for await (const chunk of stream.source) chunks.push(chunk.subarray())
      })())
      const raw = concat(chunks)
      const ack = raw.length ? cborDecode(raw) : null
      const frame = await events.waitFor((f) => f.type === 'direct' && f.id === id, 15000)
      if (!ack || ack.id !== id || Object.keys(ack).length !== 1) {
        return ['FAIL', `ack ${JSON.stringify(ack)} (raw ${raw.toString('hex')}), expected {"id":"${id}"}`]
      }
      if (!frame) return ['FAIL', 'acknowledged, but no direct event on /api/events within 15 s']
      if (frame.data !== b64(data) || frame.from !== me) {
        return ['FAIL', `direct event ${JSON.stringify(frame)} does not carry the bytes sent from ${me}`]
      }
      return ['PASS', `ack ${JSON.stringify(ack)}, direct event with the ${data.length} bytes, from = this peer`]
    })
  } finally {
    events.close()
    await within(5000, 'node.stop()', node.stop()).catch(() => {})
  }
}

try {
  await main()
} catch (e) {
  record('FAIL', 'harness', `${e?.name ?? 'Error'}: ${e?.message ?? e}`)
}
process.exit(failed ? 1 : 0)
