// Daemon factories for @libp2p/interop: one per implementation, each a real
// process started from its command line and driven through the control
// protocol by @libp2p/daemon-client.
//
//   hive  target/debug/hive-p2pd with go-libp2p-daemon's flags (HIVE_P2PD)
//   go    hivemind's p2pd, the go daemon inside the hivemind wheel (GO_P2PD)
//   js    harness/js-daemon.mjs: js-libp2p + @libp2p/daemon-server
//
// The suite only knows two roles, `js` and `go`. A pair A-B runs the whole
// suite with role `js` played by A and role `go` by B (INTEROP_PAIR=A-B).
//
// How the suite's options become flags (the same for all three, since
// hive-p2pd is meant as a drop-in p2pd and the js script takes go flags):
//   noListen            -noListenAddrs, else -hostAddrs=<loopback address>
//   transport           tcp /ip4/127.0.0.1/tcp/0, webtransport
//                       /ip4/127.0.0.1/udp/0/quic-v1/webtransport, webrtc-direct
//                       /ip4/127.0.0.1/udp/0/webrtc-direct
//   key                 -id=<key file>
//   encryption          noise -tls=false, tls -noise=false, plaintext: js
//                       -plaintext; go's command line has no plaintext option
//   muxer               mplex -muxer=mplex; yamux is every daemon's default
//   dht                 -dhtServer
//   pubsub/pubsubRouter -pubsub -pubsubRouter=<router>
//   relay               -relay (go's p2pd serves circuit relay v2 HOP with it
//                       alone, whatever its reachability; so must the others)
//
// Skip or fail: a configuration that cannot be expressed on a daemon's
// command line at all throws the suite's UnsupportedError, which the spec
// turns into a skipped (pending) test. A configuration that can be expressed
// is always passed on; if the daemon refuses it, exits, or runs without
// honouring it, the case fails. Two checks catch flags that are accepted
// but ignored: the peer id must be the one of the -id key, and a listening
// daemon asked for an encryption must accept that protocol in
// multistream-select on its TCP address.
import './node20.mjs'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { createClient } from '@libp2p/daemon-client'
import { Request, StreamHandlerRequest } from '@libp2p/daemon-protocol'
import { UnsupportedError } from '@libp2p/interop'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { pbStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '../../..')

export const IMPLS = ['hive', 'go', 'js']

const HOST_ADDRS = {
  tcp: '/ip4/127.0.0.1/tcp/0',
  webtransport: '/ip4/127.0.0.1/udp/0/quic-v1/webtransport',
  'webrtc-direct': '/ip4/127.0.0.1/udp/0/webrtc-direct'
}

const SECURITY_PROTOCOLS = {
  noise: '/noise',
  tls: '/tls/1.0.0',
  plaintext: '/plaintext/2.0.0'
}

function command (impl) {
  switch (impl) {
    case 'hive': return { bin: process.env.HIVE_P2PD ?? path.join(root, 'target/debug/hive-p2pd'), pre: [] }
    case 'go': return { bin: process.env.GO_P2PD ?? path.join(root, 'target/anchors/hivemind/hivemind_cli/p2pd'), pre: [] }
    case 'js': return { bin: process.execPath, pre: [path.join(here, 'js-daemon.mjs')] }
    default: throw new Error(`unknown implementation ${impl}`)
  }
}

/** The daemon's command-line flags for the suite's options. */
export function flagsFor (impl, options, socketPath) {
  const flags = [`-listen=/unix${socketPath}`, '-b=false']
  const transport = options.transport ?? 'tcp'
  if (HOST_ADDRS[transport] == null) {
    throw new UnsupportedError(`unknown transport ${transport}`)
  }
  if (impl === 'js' && transport !== 'tcp') {
    // js-libp2p has no WebTransport listener in Node.js, and its WebRTC
    // transport needs a native module (node-datachannel) whose binaries come
    // from GitHub, not from the npm registry.
    throw new UnsupportedError(`the js daemon here has no ${transport} transport`)
  }
  if (options.noListen === true) {
    flags.push('-noListenAddrs')
  } else {
    flags.push(`-hostAddrs=${HOST_ADDRS[transport]}`)
  }
  if (options.key != null) flags.push(`-id=${options.key}`)
  switch (options.encryption) {
    case undefined: break
    case 'noise': flags.push('-tls=false'); break
    case 'tls': flags.push('-noise=false'); break
    case 'plaintext':
      if (impl !== 'js') throw new UnsupportedError('go-libp2p-daemon\'s command line has no plaintext option')
      flags.push('-plaintext')
      break
    default: throw new UnsupportedError(`unknown encryption ${options.encryption}`)
  }
  if (options.muxer === 'mplex') flags.push('-muxer=mplex')
  else if (options.muxer != null && options.muxer !== 'yamux') throw new UnsupportedError(`unknown muxer ${options.muxer}`)
  if (options.dht === true) flags.push('-dhtServer')
  if (options.pubsub === true) flags.push('-pubsub', `-pubsubRouter=${options.pubsubRouter ?? 'gossipsub'}`)
  if (options.relay === true) flags.push('-relay')
  return flags
}

const live = new Set()
let counter = 0

function killAll () {
  for (const d of live) {
    try { d.child.kill('SIGKILL') } catch {}
    try { fs.rmSync(d.socketPath, { force: true }) } catch {}
  }
}
process.on('exit', killAll)

/** Stop every daemon still running (a safety net for a failed hook). */
export async function stopAll () {
  await Promise.all([...live].map(async d => d.stop()))
}

function tail (file, lines = 6) {
  try {
    return fs.readFileSync(file, 'utf8')
      .replace(/\x1b\[[0-9;]*m/g, '')
      .split('\n')
      .filter(l => l.trim() !== '' && !l.startsWith('$ ') && !l.startsWith('# '))
      .filter((l, _, all) => !/\s(INFO|DEBUG|TRACE)\s/.test(l) || all.every(m => /\s(INFO|DEBUG|TRACE)\s/.test(m)))
      .slice(-lines)
      .join(' | ')
  } catch {
    return ''
  }
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function varint (n) {
  const out = []
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n >>>= 7 }
  out.push(n)
  return Uint8Array.from(out)
}

function concat (...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/**
 * hivemind's fork of the go daemon makes `balanced` (field 3 of
 * StreamHandlerRequest) required and closes the connection of a client that
 * leaves it out, as @libp2p/daemon-client does. For clients of the go daemon
 * only, STREAM_HANDLER requests get `balanced: false` appended; hive-p2pd and
 * the js daemon see the client's own bytes. INTEROP_GO_BALANCED=0 turns this off.
 */
function addBalancedField (client) {
  const send = client.send.bind(client)
  const codec = {
    encode (request) {
      const { streamHandler, ...rest } = request
      const inner = concat(StreamHandlerRequest.encode(streamHandler), Uint8Array.of(0x18, 0x00))
      return concat(Request.encode(rest), Uint8Array.of(0x22), varint(inner.length), inner)
    },
    decode: Request.decode
  }
  client.send = async (request) => {
    if (request.type !== Request.Type.STREAM_HANDLER || request.streamHandler == null) {
      return send(request)
    }
    const maConn = await client.connectDaemon()
    const pb = pbStream(maConn)
    await pb.write(request, codec)
    return pb
  }
}

/** multistream-select on a raw TCP connection: does the listener accept `proto`? */
async function offersProtocol (host, port, proto, timeoutMs = 3000) {
  const line = s => {
    const body = Buffer.from(s + '\n')
    return Buffer.concat([Buffer.from(varint(body.length)), body])
  }
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    let buf = Buffer.alloc(0)
    const answers = []
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no multistream-select answer from ${host}:${port} within ${timeoutMs} ms`)) }, timeoutMs)
    socket.on('connect', () => socket.write(Buffer.concat([line('/multistream/1.0.0'), line(proto)])))
    socket.on('data', chunk => {
      buf = Buffer.concat([buf, chunk])
      while (buf.length > 0) {
        let len = 0; let shift = 0; let i = 0
        for (; i < buf.length; i++) {
          len |= (buf[i] & 0x7f) << shift
          shift += 7
          if ((buf[i] & 0x80) === 0) break
        }
        if (i >= buf.length || buf.length < i + 1 + len) return
        answers.push(buf.subarray(i + 1, i + 1 + len).toString().trimEnd())
        buf = buf.subarray(i + 1 + len)
        if (answers.length === 2) {
          clearTimeout(timer)
          socket.destroy()
          resolve({ accepted: answers[1] === proto, answer: answers[1] })
          return
        }
      }
    })
    socket.on('error', err => { clearTimeout(timer); reject(err) })
    socket.on('close', () => {
      clearTimeout(timer)
      if (answers.length < 2) reject(new Error(`${host}:${port} closed the connection during multistream-select (answers: ${JSON.stringify(answers)})`))
    })
  })
}

async function checkHonoured (impl, options, identity, flags) {
  if (options.key != null) {
    const expected = peerIdFromPrivateKey(privateKeyFromProtobuf(fs.readFileSync(options.key)))
    if (!identity.peerId.equals(expected)) {
      throw new Error(`${impl} was started with -id=${path.basename(options.key)} (peer id ${expected}) but runs as ${identity.peerId}`)
    }
  }
  if (options.encryption != null && options.noListen !== true) {
    const proto = SECURITY_PROTOCOLS[options.encryption]
    // the first plain /ip4|ip6/…/tcp/… address the daemon reports
    const tcpAddr = identity.addrs
      .map(a => a.getComponents())
      .find(c => c.length === 2 && (c[0].name === 'ip4' || c[0].name === 'ip6') && c[1].name === 'tcp')
    if (tcpAddr == null) return
    const security = flags.filter(f => /^-(tls|noise|plaintext)/.test(f)).join(' ')
    const { accepted, answer } = await offersProtocol(tcpAddr[0].value, Number(tcpAddr[1].value), proto)
    if (!accepted) {
      throw new Error(`${impl} was started with ${security} for ${options.encryption}, but its TCP listener answers "${answer}" to ${proto} in multistream-select`)
    }
    // The one turned off must be refused too, or a "tls" case may run on
    // Noise and pass (audit row 10).
    const off = { noise: 'tls', tls: 'noise' }[options.encryption]
    if (off != null) {
      const other = await offersProtocol(tcpAddr[0].value, Number(tcpAddr[1].value), SECURITY_PROTOCOLS[off])
      if (other.accepted) {
        throw new Error(`${impl} was started with ${security} for ${options.encryption}, but its TCP listener still accepts ${SECURITY_PROTOCOLS[off]}`)
      }
    }
  }
}

const childEnv = () => ({ ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', NO_COLOR: '1' })

function track (child) {
  const proc = { child, exit: null, flushed: Promise.resolve() }
  proc.exited = new Promise(resolve => {
    child.on('exit', (code, signal) => { proc.exit ??= { code, signal }; resolve() })
    child.on('error', error => { proc.exit ??= { code: null, signal: null, error }; resolve() })
  })
  return proc
}

function startProcess (bin, args, logFile) {
  const out = fs.openSync(logFile, 'a')
  const child = spawn(bin, args, { stdio: ['ignore', out, out], env: childEnv() })
  fs.closeSync(out)
  return track(child)
}

// Loading js-libp2p takes most of a js daemon's start-up (about 0.7 s of
// CPU here), so a few js daemons are kept loaded and waiting for their flags
// on stdin (js-daemon.mjs -stdin); each still serves exactly one spawn.
const JS_WARM = Number(process.env.INTEROP_JS_WARM ?? 2)
const warmJs = []

function spawnWarmJs () {
  const { bin, pre } = command('js')
  const child = spawn(bin, [...pre, '-stdin'], { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv() })
  const proc = track(child)
  proc.early = []
  proc.collect = chunk => proc.early.push(chunk)
  child.stdout.on('data', proc.collect)
  child.stderr.on('data', proc.collect)
  child.stdin.on('error', () => {})
  // waiting daemons must not keep the harness's event loop alive
  child.unref()
  for (const stream of [child.stdin, child.stdout, child.stderr]) stream.unref?.()
  warmJs.push(proc)
}

function startWarmJs (flags, logFile) {
  let proc
  while (proc == null) {
    if (warmJs.length === 0) spawnWarmJs()
    const next = warmJs.shift()
    if (next.exit == null) proc = next
  }
  while (warmJs.length < JS_WARM) spawnWarmJs()
  const log = fs.createWriteStream(logFile, { flags: 'a' })
  for (const chunk of proc.early) log.write(chunk)
  proc.child.stdout.off('data', proc.collect)
  proc.child.stderr.off('data', proc.collect)
  proc.child.stdout.pipe(log, { end: false })
  proc.child.stderr.pipe(log, { end: false })
  proc.flushed = new Promise(resolve => proc.child.on('close', () => log.end(resolve)))
  proc.child.stdin.write(JSON.stringify(flags) + '\n')
  return proc
}

process.on('exit', () => {
  for (const proc of warmJs) {
    try { proc.child.kill('SIGKILL') } catch {}
  }
})

/**
 * Start one daemon of `impl` for the suite's `options`; resolves once its
 * control socket answers IDENTIFY.
 */
export async function spawnDaemon (impl, options, { logDir, readyTimeoutMs = 15000 } = {}) {
  const n = ++counter
  const startedAt = Date.now()
  const socketPath = path.join('/tmp', `hive-interop-${process.pid}-${n}.sock`)
  const flags = flagsFor(impl, options, socketPath)
  const { bin, pre } = command(impl)
  fs.rmSync(socketPath, { force: true })
  let logFile = '/dev/null'
  if (logDir != null) {
    fs.mkdirSync(logDir, { recursive: true })
    logFile = path.join(logDir, `${String(n).padStart(3, '0')}-${impl}.log`)
    fs.writeFileSync(logFile, `$ ${[bin, ...pre, ...flags].join(' ')}\n# options ${JSON.stringify(options)}\n`)
  }
  const proc = impl === 'js'
    ? startWarmJs(flags, logFile)
    : startProcess(bin, [...pre, ...flags], logFile)
  const child = proc.child

  const client = createClient(multiaddr(`/unix/${encodeURIComponent(socketPath)}`))
  if (impl === 'go' && process.env.INTEROP_GO_BALANCED !== '0') addBalancedField(client)

  const daemon = {
    impl,
    options,
    child,
    socketPath,
    logFile,
    client,
    async stop () {
      if (!live.has(daemon)) return
      live.delete(daemon)
      if (proc.exit == null) {
        child.kill('SIGTERM')
        const killer = setTimeout(() => child.kill('SIGKILL'), 3000)
        await proc.exited
        clearTimeout(killer)
      }
      fs.rmSync(socketPath, { force: true })
    }
  }
  live.add(daemon)

  const deadline = Date.now() + readyTimeoutMs
  let identity
  let lastError
  while (identity == null) {
    if (proc.exit != null) {
      await daemon.stop()
      await proc.flushed
      const exited = proc.exit
      const why = exited.error?.message ?? `exit code ${exited.code}${exited.signal ? `, signal ${exited.signal}` : ''}`
      throw new Error(`${impl} daemon exited at start-up (${why}): ${tail(logFile, 3)} [flags: ${flags.slice(2).join(' ')}; log ${path.basename(logFile)}]`)
    }
    if (Date.now() > deadline) {
      await daemon.stop()
      throw new Error(`${impl} daemon: no IDENTIFY answer on its control socket within ${readyTimeoutMs} ms (${lastError?.message ?? 'socket never appeared'}) [log ${path.basename(logFile)}]: ${tail(logFile, 3)}`)
    }
    if (fs.existsSync(socketPath)) {
      try {
        identity = await client.identify()
        break
      } catch (err) {
        lastError = err
      }
    }
    await sleep(50)
  }
  if (logDir != null) fs.appendFileSync(logFile, `# harness: control socket answered after ${Date.now() - startedAt} ms\n`)
  try {
    await checkHonoured(impl, options, identity, flags)
  } catch (err) {
    await daemon.stop()
    throw err
  }
  return daemon
}

/** The factory for one pair: role `js` is played by `a`, role `go` by `b`. */
export function pairFactory (a, b, { logDir } = {}) {
  for (const impl of [a, b]) {
    if (!IMPLS.includes(impl)) throw new Error(`unknown implementation ${impl} (one of ${IMPLS.join(', ')})`)
  }
  return {
    async spawn (options) {
      const impl = options.type === 'go' ? b : a
      return spawnDaemon(impl, options, { logDir })
    }
  }
}
