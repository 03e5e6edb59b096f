// The js daemon of the interop suite: a js-libp2p node (npm `libp2p`) behind
// @libp2p/daemon-server's control protocol, configured from a go-daemon-like
// command line so that the harness maps the suite's options the same way for
// every implementation.
//
// Flags (go syntax: -name, -name=value, -name value):
//   -listen=/unix/PATH        control socket (required)
//   -hostAddrs=MA[,MA]        listen addresses (default /ip4/127.0.0.1/tcp/0)
//   -noListenAddrs            listen on nothing
//   -id=FILE                  libp2p PrivateKey protobuf (ed25519, secp256k1, rsa)
//   -noise=BOOL -tls=BOOL     connection encrypters (both on by default, like go)
//   -plaintext                /plaintext/2.0.0 only (no go-daemon equivalent)
//   -muxer=yamux|mplex        stream muxer (default yamux, like go)
//   -dht | -dhtServer         Kademlia (/ipfs/kad/1.0.0) in server mode
//   -dhtClient                Kademlia in client mode
//   -pubsub -pubsubRouter=gossipsub|floodsub
//   -relay                    also serve as a circuit relay v2 (hop); every node
//                             can dial and be dialled through a relay
//   -b=BOOL -forceReachabilityPublic -q   accepted, no effect here
//   -stdin                    read the flags above from stdin (see below)
// Prints the go daemon's start-up lines once the control socket listens.
import './node20.mjs'
import fs from 'node:fs'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { createServer } from '@libp2p/daemon-server'
import { floodsub } from '@libp2p/floodsub'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { mplex } from '@libp2p/mplex'
import { ping } from '@libp2p/ping'
import { plaintext } from '@libp2p/plaintext'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const BOOLS = new Set(['noListenAddrs', 'noise', 'tls', 'plaintext', 'dht', 'dhtServer', 'dhtClient',
  'pubsub', 'relay', 'b', 'forceReachabilityPublic', 'q'])
const VALUES = new Set(['listen', 'hostAddrs', 'id', 'muxer', 'pubsubRouter'])

function parseFlags (argv) {
  const opts = { noise: true, tls: true, muxer: 'yamux', pubsubRouter: 'gossipsub', hostAddrs: '/ip4/127.0.0.1/tcp/0' }
  for (let i = 0; i < argv.length; i++) {
    const m = /^-([A-Za-z]+)(?:=(.*))?$/s.exec(argv[i])
    if (m == null) throw new Error(`unexpected argument ${argv[i]}`)
    const [, name, inline] = m
    if (BOOLS.has(name)) {
      if (inline == null) opts[name] = true
      else if (/^(1|t|true)$/i.test(inline)) opts[name] = true
      else if (/^(0|f|false)$/i.test(inline)) opts[name] = false
      else throw new Error(`-${name}=${inline}: not a boolean`)
    } else if (VALUES.has(name)) {
      const value = inline ?? argv[++i]
      if (value == null) throw new Error(`-${name} needs a value`)
      opts[name] = value
    } else {
      throw new Error(`unknown flag -${name}`)
    }
  }
  if (opts.listen == null) throw new Error('-listen=/unix/PATH is required')
  return opts
}

// `-stdin`: everything above is loaded first, then the flags are read as
// one JSON array line from stdin (the harness keeps such warm processes ready
// because loading js-libp2p takes most of a start-up). A daemon started this
// way exits when its stdin closes, so it never outlives the harness.
function readFlagsFromStdin () {
  return new Promise(resolve => {
    let buffered = ''
    let done = false
    process.stdin.setEncoding('utf8')
    process.stdin.on('data', chunk => {
      if (done) return
      buffered += chunk
      const nl = buffered.indexOf('\n')
      if (nl >= 0) {
        done = true
        resolve(JSON.parse(buffered.slice(0, nl)))
      }
    })
    process.stdin.on('end', () => process.exit(0))
  })
}

let argv = process.argv.slice(2)
if (argv.length === 1 && argv[0] === '-stdin') argv = await readFlagsFromStdin()
const opts = parseFlags(argv)

let encrypters
if (opts.plaintext) {
  encrypters = [plaintext()]
} else {
  encrypters = []
  if (opts.noise) encrypters.push(noise())
  if (opts.tls) encrypters.push(tls())
  if (encrypters.length === 0) throw new Error('no connection encrypter left (-noise=false -tls=false)')
}

let muxer
if (opts.muxer === 'yamux') muxer = yamux()
else if (opts.muxer === 'mplex') muxer = mplex()
else throw new Error(`-muxer=${opts.muxer}: yamux or mplex`)

const services = { identify: identify(), ping: ping() }
if (opts.dht || opts.dhtServer || opts.dhtClient) {
  services.dht = kadDHT({
    protocol: '/ipfs/kad/1.0.0',
    clientMode: opts.dhtClient === true && !(opts.dht || opts.dhtServer),
    // everything here is on loopback: keep private addresses in the table
    peerInfoMapper: passthroughMapper
  })
}
if (opts.pubsub) {
  if (opts.pubsubRouter === 'floodsub') services.pubsub = floodsub()
  else if (opts.pubsubRouter === 'gossipsub') services.pubsub = gossipsub({ allowPublishToZeroTopicPeers: true })
  else throw new Error(`-pubsubRouter=${opts.pubsubRouter}: gossipsub or floodsub`)
}
if (opts.relay) {
  services.relay = circuitRelayServer()
}

const config = {
  addresses: { listen: opts.noListenAddrs ? [] : opts.hostAddrs.split(',').filter(Boolean) },
  transports: [tcp(), circuitRelayTransport()],
  connectionEncrypters: encrypters,
  streamMuxers: [muxer],
  services
}
if (opts.id != null) {
  config.privateKey = privateKeyFromProtobuf(fs.readFileSync(opts.id))
}

const node = await createLibp2p(config)

// multiaddr 13 takes a /unix/ socket path as one URI-encoded component.
const unixPath = opts.listen.replace(/^\/unix/, '')
if (!opts.listen.startsWith('/unix/')) throw new Error('-listen must be /unix/PATH')
const server = createServer(multiaddr(`/unix/${encodeURIComponent(unixPath)}`), node)
await server.start()

if (!opts.q) {
  const lines = [`Control socket: ${opts.listen}`, `Peer ID: ${node.peerId.toString()}`, 'Peer Addrs:']
  for (const a of node.getMultiaddrs()) lines.push(a.toString().replace(/\/p2p\/[^/]+$/, ''))
  process.stdout.write(lines.join('\n') + '\n')
}

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  await server.stop().catch(() => {})
  await node.stop().catch(() => {})
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
