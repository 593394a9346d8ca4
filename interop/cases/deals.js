// Deals with rm's provider: free, paid (vouchers signed here), one that waits more than a
// minute for funds with a client that does not run ping, and the provider's ledger.

import { addressString, channelAddress, newWallet } from '../lib/filecoin.js'
import { retrieve } from '../lib/deal.js'
import { node } from '../lib/host.js'
import { hex, sameBytes } from '../lib/wire.js'
import { CID } from 'multiformats/cid'

const FREE = { price: 0n, unsealPrice: 0n, interval: 0, increase: 0 }

function sameFile (got, want, what) {
  if (!sameBytes(got, want)) throw new Error(`${what}: the file differs (${got.length} bytes, expected ${want.length})`)
}

/** lorem.txt as `rm import` stored it, and as the many-block DAG. */
export async function free (c) {
  const out = []
  for (const [what, payload, id] of [['rm import', c.free.plain.payload_cid, 1], ['1 KiB leaves', c.dag.root.toString(), 2]]) {
    const deal = await retrieve(c.client, c.free.addr, { payload: CID.parse(payload), id, terms: FREE })
    sameFile(deal.file, c.lorem, what)
    if (deal.vouchers.length !== 0) throw new Error('a free deal asked for money')
    out.push(`${what}: ${deal.blocks} blocks verified, file equal (${deal.statuses.join(' > ')})`)
  }
  return out.join('; ')
}

/** A payer: a new secp256k1 wallet and its channel to the provider (creation nonce 0). */
function payer (provider) {
  const wallet = newWallet()
  return { wallet, channel: channelAddress(wallet.address, provider.walletBytes, 0), lane: 0 }
}

async function paidDeal (c, client, id, wait) {
  const p = payer(c.paid)
  const terms = c.paid.ask
  const deal = await retrieve(client, c.paid.addr, {
    payload: c.dag.root, id, terms, payer: p, wait, log: c.log
  })
  sameFile(deal.file, c.lorem, 'paid deal')
  const due = terms.unsealPrice + terms.price * BigInt(deal.bytes)
  if (deal.paid !== due) throw new Error(`paid ${deal.paid}, the terms make ${due}`)
  const last = deal.vouchers.at(-1)
  c.vouchers.push({ channel: p.channel, lane: p.lane, ...last })
  return { deal, p }
}

export async function paid (c) {
  const { deal, p } = await paidDeal(c, c.client, 3, 0)
  return `${deal.blocks} blocks verified, ${deal.vouchers.length} vouchers (` +
    `${deal.vouchers.map(v => v.amount).join(', ')} attoFIL) on ${addressString(p.channel)}, file equal`
}

/** Waits 65 s on the unseal payment with a js-libp2p node that has no ping service. */
export async function long (c) {
  const client = await node()
  try {
    const started = Date.now()
    const { deal } = await paidDeal(c, client, 4, 65_000)
    const conns = client.getConnections()
    if (conns.length !== 1 || conns[0].id !== deal.connection?.id || conns[0].status !== 'open') {
      throw new Error(`the connection did not last: ${conns.map(x => `${x.id} ${x.status}`)}`)
    }
    // js-libp2p's connection monitor records the round trip of its pings.
    if (typeof conns[0].rtt !== 'number') throw new Error('the connection monitor never pinged rm')
    const secs = ((Date.now() - started) / 1000).toFixed(0)
    return `deal stream open ${secs} s on one connection, rm answering the js connection monitor's ` +
      `pings (rtt ${conns[0].rtt} ms) though the client refuses rm's; ${deal.statuses.join(' > ')}; file equal`
  } finally {
    await client.stop()
  }
}

/** After the paid provider stops: its ledger holds every deal's last voucher. */
export async function ledger (c) {
  if (c.vouchers.length === 0) throw new Error('no paid deal ran')
  await c.rm.stop(c.paid)
  const v = await c.rm.json(c.paid.home, ['fund'])
  for (const want of c.vouchers) {
    const address = addressString(want.channel)
    const channel = v.channels.find(ch => ch.channel === address)
    if (channel == null) throw new Error(`the ledger has no channel ${address}`)
    const lane = channel.lanes.find(l => l.lane === want.lane)
    if (lane == null) throw new Error(`${address}: no lane ${want.lane}`)
    if (lane.voucher !== hex(want.bytes)) throw new Error(`${address}: the stored voucher ${lane.voucher} is not the last one sent ${hex(want.bytes)}`)
    if (BigInt(lane.redeemed) !== want.amount || lane.nonce !== want.nonce || BigInt(channel.owed) !== want.amount) {
      throw new Error(`${address}: redeemed ${lane.redeemed} nonce ${lane.nonce} owed ${channel.owed}, expected ${want.amount} / ${want.nonce}`)
    }
  }
  return `${c.vouchers.length} channels learned from JS-signed vouchers; each holds its last voucher byte for byte`
}
