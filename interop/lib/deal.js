// The client side of a deal on /fil/retrieval/0.0.1: proposal, responses with blocks
// verified as they arrive, vouchers signed here for every payment the provider asks.

import { Verifier } from './dag.js'
import { signVoucher, tokenBytes, tokenValue } from './filecoin.js'
import { open } from './host.js'
import { DEAL, DealStatus, EXPLORE_ALL, ItemReader, writeItem } from './wire.js'

const STATUS_NAME = Object.fromEntries(Object.entries(DealStatus).map(([k, v]) => [v, k]))
export const statusName = s => STATUS_NAME[s] ?? String(s)

/**
 * Runs a whole deal for `payload` from the provider at `addr`.
 *
 * `terms`: { price, interval, increase, unsealPrice } (attoFIL, bytes).
 * `payer`: { wallet, channel, lane } to pay with, required when anything is owed.
 * `wait`: milliseconds to sit on the first payment request before paying (a client
 *   waiting for funds).
 * Returns what happened: statuses in order, blocks, bytes, the file, vouchers sent.
 */
export async function retrieve (host, addr, { payload, id, terms, payer = null, wait = 0, log = () => {} }) {
  const stream = await open(host, addr, DEAL)
  const peer = addr.split('/p2p/')[1]
  const connection = host.getConnections().find(c => c.remotePeer.toString() === peer)
  const verifier = new Verifier(payload)
  const proposal = {
    PayloadCID: payload,
    ID: id,
    Params: {
      Selector: EXPLORE_ALL,
      PieceCID: null,
      PricePerByte: tokenBytes(terms.price),
      PaymentInterval: terms.interval,
      PaymentIntervalIncrease: terms.increase,
      UnsealPrice: tokenBytes(terms.unsealPrice)
    }
  }
  await writeItem(stream, proposal)
  const reader = new ItemReader(stream)
  const statuses = []
  const vouchers = []
  let paid = 0n
  let nonce = 0
  let waited = false
  for (;;) {
    const item = await reader.next()
    if (item == null) throw new Error(`stream ended after ${statuses.map(statusName)}`)
    const r = item.value
    if (r.ID !== id) throw new Error(`response for deal ${r.ID}, expected ${id}`)
    if (statuses.at(-1) !== r.Status) statuses.push(r.Status)
    for (const block of r.Blocks ?? []) await verifier.push(block)
    switch (r.Status) {
      case DealStatus.Accepted:
      case DealStatus.Ongoing:
        break
      case DealStatus.Completed:
        if (!verifier.done) throw new Error(`completed after ${verifier.blocks} blocks, traversal unfinished`)
        await stream.close()
        return { statuses: statuses.map(statusName), blocks: verifier.blocks, bytes: verifier.bytes, file: verifier.file(), vouchers, paid, connection }
      case DealStatus.FundsNeededUnseal:
      case DealStatus.FundsNeeded:
      case DealStatus.FundsNeededLastPayment: {
        const owed = tokenValue(r.PaymentOwed)
        // Never more than the terms allow for what was verified so far.
        const due = BigInt(terms.unsealPrice) + BigInt(terms.price) * BigInt(verifier.bytes) - paid
        if (owed <= 0n || owed > due) throw new Error(`${statusName(r.Status)} asks ${owed}, at most ${due} is due`)
        if (payer == null) throw new Error(`${statusName(r.Status)} on a free deal`)
        if (wait > 0 && !waited) {
          waited = true
          log(`waiting ${wait / 1000} s before paying, as a client adding funds`)
          await new Promise(resolve => setTimeout(resolve, wait))
        }
        paid += owed
        nonce += 1
        const voucher = signVoucher(payer.wallet, { channel: payer.channel, lane: payer.lane, nonce, amount: paid })
        vouchers.push({ nonce, amount: paid, bytes: voucher.bytes })
        await writeItem(stream, { ID: id, PaymentChannel: payer.channel, PaymentVoucher: voucher.tuple })
        break
      }
      default:
        throw new Error(`deal ended ${statusName(r.Status)}: ${r.Message}`)
    }
  }
}
