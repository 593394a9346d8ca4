// 200 queries at once: from one peer, from 20 peers (10 each), from 200 peers (one each).
// Each ends answered, refused (a clean close without an answer), refused at connect (the
// provider takes at most 64 connections from one IP address, and every peer here is
// 127.0.0.1) or failed (reset, error).

import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { node } from '../lib/host.js'
import { QUERY_V1 } from '../lib/wire.js'
import { query } from './query.js'

// How js-libp2p reports a connection the provider closed while or just after it was
// set up (rm closes connections over its limits at once, before any stream).
const CONNECTION_REFUSED = ['EncryptionFailedError', 'ConnectionClosedError']

async function round (c, peers, perPeer) {
  const hosts = await Promise.all(Array.from({ length: peers }, () => node()))
  try {
    const payload = CID.parse(c.free.plain.payload_cid)
    // Connect first, so the queries start together.
    const connected = await Promise.all(hosts.map(h => h.dial(multiaddr(c.free.addr))
      .then(() => true, () => false)))
    const outcomes = await Promise.all(hosts.flatMap((h, i) => Array.from({ length: perPeer }, () =>
      !connected[i]
        ? 'refused at connect'
        : query(h, c.free.addr, QUERY_V1, payload, null, { maxOutboundStreams: 1024 })
          .then(r => r.refused ? 'refused' : r.response.Status === 0 ? 'answered' : 'wrong answer')
          .catch(e => CONNECTION_REFUSED.includes(e.name) ? 'refused at connect' : `failed: ${e.name}`))))
    const count = {}
    for (const o of outcomes) count[o] = (count[o] ?? 0) + 1
    return count
  } finally {
    await Promise.all(hosts.map(h => h.stop()))
  }
}

const show = count => Object.entries(count).map(([k, n]) => `${n} ${k}`).join(', ')

export async function run (c) {
  const twenty = await round(c, 20, 10)
  const one = await round(c, 1, 200)
  const many = await round(c, 200, 1)
  c.log(`1 peer x 200: ${show(one)}`)
  c.log(`20 peers x 10: ${show(twenty)}`)
  c.log(`200 peers x 1: ${show(many)}`)
  if (twenty.answered !== 200) throw new Error(`20 peers x 10: ${show(twenty)}; all 200 must be answered`)
  for (const [what, count] of [['1 peer', one], ['200 peers', many]]) {
    const bad = Object.keys(count).filter(k => !['answered', 'refused', 'refused at connect'].includes(k))
    if (bad.length > 0) throw new Error(`${what}: ${show(count)}; a query not answered must be refused cleanly`)
  }
  if (!many.answered) throw new Error(`200 peers x 1: ${show(many)}; the connections within the limit must be served`)
  return `answered of 200: ${twenty.answered} from 20 peers, ${one.answered ?? 0} from 1 peer ` +
    `(${one.refused ?? 0} refused cleanly), ${many.answered ?? 0} from 200 peers (${many.refused ?? 0} refused cleanly, ` +
    `${many['refused at connect'] ?? 0} refused at connect: 64 connections per IP address)`
}
