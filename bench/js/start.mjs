// The js-libp2p daemon anchor: a js-libp2p node (TCP, Noise, Yamux,
// identify, gossipsub) behind @libp2p/daemon-server's control protocol.
// Flags, a subset of the go daemon's: -listen /unix/PATH, -hostAddrs MULTIADDR.
// Prints the go daemon's start-up lines once the control socket listens.
import './node20.mjs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { createServer } from '@libp2p/daemon-server'
import { multiaddr } from '@multiformats/multiaddr'

const opts = { listen: '/unix/tmp/js-p2pd.sock', hostAddrs: '/ip4/127.0.0.1/tcp/0' }
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  const [flag, inline] = argv[i].replace(/^-+/, '').split(/=(.*)/s)
  if (flag in opts) opts[flag] = inline ?? argv[++i]
}

const node = await createLibp2p({
  addresses: { listen: opts.hostAddrs.split(',') },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    pubsub: gossipsub({ allowPublishToZeroTopicPeers: true })
  }
})
// multiaddr 13 wants the socket path of /unix/ as one URI-encoded component.
const control = opts.listen.startsWith('/unix/')
  ? multiaddr(`/unix/${encodeURIComponent(opts.listen.slice('/unix'.length).replace(/^\/+/, '/'))}`)
  : multiaddr(opts.listen)
const server = createServer(control, node)
await server.start()
const lines = [`Control socket: ${opts.listen}`, `Peer ID: ${node.peerId.toString()}`, 'Peer Addrs:']
for (const a of node.getMultiaddrs()) lines.push(a.toString().replace(/\/p2p\/.*$/, ''))
process.stdout.write(lines.join('\n') + '\n')

const stop = async () => { await server.stop().catch(() => {}); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
