// js-libp2p 3 nodes: TCP + noise + yamux on 127.0.0.1, no ping service. js-libp2p's
// connection monitor still pings every connection (every 10 s) and closes a connection
// whose pings go unanswered; that is the client the issue describes.

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

/** A started node; `listen` makes it listen on a free 127.0.0.1 port. */
export async function node ({ listen = false } = {}) {
  return createLibp2p({
    addresses: { listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { maxConnections: 1000 }
  })
}

/** Opens a stream for `protocol` to the peer at `addr` (a multiaddr with /p2p/). */
export async function open (host, addr, protocol, options = {}) {
  return host.dialProtocol(multiaddr(addr), protocol, { signal: AbortSignal.timeout(10_000), ...options })
}
