// 200 queries at once: from one peer, from 20 peers (10 each), from 200 peers (one each).
// Each ends answered, refused (a clean close without an answer) or failed (reset, error).

import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { node } from '../lib/host.js'
import { QUERY_V1 } from '../lib/wire.js'
import { query } from './query.js'

async function round (c, peers, perPeer) {
  const hosts = await Promise.all(Array.from({ length: peers }, () => node()))
  try {
    const payload = CID.parse(c.free.plain.payload_cid)
    // Connect first, so the queries start together.
    await Promise.all(hosts.map(h => h.dial(multiaddr(c.free.addr))))
    const outcomes = await Promise.all(hosts.flatMap(h => Array.from({ length: perPeer }, () =>
      query(h, c.free.addr, QUERY_V1, payload, null, { maxOutboundStreams: 1024 })
        .then(r => r.refused ? 'refused' : r.response.Status === 0 ? 'answered' : 'wrong answer')
        .catch(e => `failed: ${e.name}`))))
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
    const bad = Object.keys(count).filter(k => k !== 'answered' && k !== 'refused')
    if (bad.length > 0) throw new Error(`${what}: ${show(count)}; a query not answered must be refused cleanly`)
  }
  return `answered of 200: ${twenty.answered} from 20 peers, ${one.answered ?? 0} from 1 peer ` +
    `(${one.refused ?? 0} refused cleanly), ${many.answered ?? 0} from 200 peers (${many.refused ?? 0} refused cleanly)`
}
