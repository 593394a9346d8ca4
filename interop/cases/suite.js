// The cases, in order, against two `rm serve` providers: "free" (price 0) holding
// lorem.txt as `rm import` makes it and as a many-block DAG built here, and "paid"
// (2 attoFIL/byte, unseal price 100) holding the many-block DAG.

import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { carBytes, unixfsDag } from '../lib/dag.js'
import { addressBytes, tokenBytes } from '../lib/filecoin.js'
import { node } from '../lib/host.js'
import { Rm } from '../lib/rm.js'
import { QueryItemStatus, QueryResponseStatus } from '../lib/wire.js'
import * as concurrency from './concurrency.js'
import * as deals from './deals.js'
import * as jsProvider from './js-provider.js'
import * as queries from './query.js'

const PAID_ASK = { price: 2n, unsealPrice: 100n, interval: 4096, increase: 1024 }

async function setup ({ rm: bin, root, workdir }) {
  const rm = new Rm(bin, workdir)
  const loremPath = join(root, 'crates/rm-e2e/testdata/lorem.txt')
  const lorem = readFileSync(loremPath)
  // lorem.txt in 1 KiB raw leaves under a balanced tree of 8 links: 19 leaves, 4 nodes.
  const dag = await unixfsDag(lorem, { chunkSize: 1024, width: 8 })
  const carPath = join(workdir, 'lorem-1k.car')
  writeFileSync(carPath, await carBytes(dag.root, dag.store))

  const free = await rm.init('free')
  const plain = await rm.json(free.home, ['import', loremPath])
  const freeCar = await rm.json(free.home, ['import', '--car', carPath])
  await rm.json(free.home, ['ask', '--price-per-byte', '0', '--unseal-price', '0'])
  const paid = await rm.init('paid')
  const paidCar = await rm.json(paid.home, ['import', '--car', carPath])
  await rm.json(paid.home, ['ask', '--price-per-byte', String(PAID_ASK.price),
    '--unseal-price', String(PAID_ASK.unsealPrice), '--payment-interval', String(PAID_ASK.interval),
    '--interval-increase', String(PAID_ASK.increase)])
  if (freeCar.payload_cid !== dag.root.toString() || paidCar.payload_cid !== dag.root.toString()) {
    throw new Error(`rm import --car gave ${freeCar.payload_cid}, the CAR's root is ${dag.root}`)
  }
  const freeServer = await rm.serve(free.home)
  const paidServer = await rm.serve(paid.home)
  const client = await node()
  return {
    rm,
    root,
    workdir,
    lorem,
    dag,
    client,
    // Paid deals, for the ledger check at the end.
    vouchers: [],
    free: { ...free, ...freeServer, walletBytes: addressBytes(free.wallet), plain, car: freeCar },
    paid: { ...paid, ...paidServer, walletBytes: addressBytes(paid.wallet), car: paidCar, ask: PAID_ASK }
  }
}

/** Unpadded size of a padded piece size (fr32: 127 of every 128 bytes). */
const unpadded = padded => padded - padded / 128

export async function suite (options) {
  // A setup that fails half way leaves no server behind: lib/rm.js kills them on exit.
  const ctx = await setup(options)
  const log = line => console.log(`  ${line}`)
  const results = []
  const only = options.only
  const step = async (name, fn) => {
    if (only && !only.includes(name)) return
    const started = Date.now()
    try {
      const detail = await fn({ ...ctx, log })
      results.push({ name, ok: true })
      console.log(`ok   ${name} (${((Date.now() - started) / 1000).toFixed(1)} s): ${detail}`)
    } catch (e) {
      results.push({ name, ok: false })
      console.log(`FAIL ${name} (${((Date.now() - started) / 1000).toFixed(1)} s): ${e.stack ?? e}`)
    }
  }
  try {
    // The long deal runs alongside the others: it waits more than a minute for funds.
    let long = null
    if (!only || only.includes('long-deal-without-ping')) {
      long = step('long-deal-without-ping', c => deals.long(c))
    }
    await step('query-available', async c => {
      const available = (p, car, ask) => ({
        Status: QueryResponseStatus.Available,
        PieceCIDFound: QueryItemStatus.Available,
        Size: unpadded(car.piece_size),
        PaymentAddress: p.walletBytes,
        MinPricePerByte: tokenBytes(ask.price),
        MaxPaymentInterval: ask.interval,
        MaxPaymentIntervalIncrease: ask.increase,
        Message: '',
        UnsealPrice: tokenBytes(ask.unsealPrice)
      })
      return queries.run(c, c.paid, [
        { what: 'paid provider, many-block DAG', payload: CID.parse(c.paid.car.payload_cid), piece: null, want: available(c.paid, c.paid.car, c.paid.ask) },
        { what: 'paid provider, its piece named', payload: CID.parse(c.paid.car.payload_cid), piece: CID.parse(c.paid.car.piece_cid), want: available(c.paid, c.paid.car, c.paid.ask) }
      ])
    })
    await step('query-unavailable', async c => {
      const notFound = queries.notFound(c.free.walletBytes)
      return queries.run(c, c.free, [
        { what: 'unknown payload', payload: CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'), piece: null, want: notFound },
        { what: 'known payload, a piece that does not hold it', payload: CID.parse(c.free.plain.payload_cid), piece: CID.parse(c.paid.car.piece_cid), want: notFound },
        { what: 'identity CID bafkqaaa', payload: CID.parse('bafkqaaa'), piece: null, want: notFound }
      ])
    })
    await step('free-deal', c => deals.free(c))
    await step('paid-deal', c => deals.paid(c))
    await step('concurrent-queries', c => concurrency.run(c))
    await step('rm-client-from-js-provider', c => jsProvider.run(c))
    if (long) await long
    await step('provider-ledger-holds-final-vouchers', c => deals.ledger(c))
  } finally {
    await ctx.client.stop()
    await ctx.rm.stopAll()
  }
  return results
}
