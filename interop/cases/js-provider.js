// The reverse direction: rm's client (`rm retrieve`) retrieves lorem.txt from a provider
// written here. The JS provider serves the many-block DAG for free: it answers queries on
// both versions and serves the deal stream as go-fil-markets' provider does for a price of
// 0 (Accepted; blocks in explore-all order; Completed with the last blocks).

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { explore, prefixBytes } from '../lib/dag.js'
import { idAddress } from '../lib/filecoin.js'
import { node } from '../lib/host.js'
import {
  DEAL, DealStatus, ItemReader, QUERY_V0, QUERY_V1, QueryItemStatus, QueryResponseStatus,
  encodeResponse, writeItem
} from '../lib/wire.js'
import { notFound } from './query.js'

/** Blocks per DealResponse. */
const BATCH = 8

/** Serves `root` (blocks in `store`) on `host`; returns counters of what was served. */
function serve (host, root, store) {
  const served = { queries: 0, deals: 0, blocks: 0 }
  const payment = idAddress(1000)
  const size = [...explore(root, store)].reduce((n, b) => n + b.bytes.length, 0)
  for (const protocol of [QUERY_V1, QUERY_V0]) {
    host.handle(protocol, async stream => {
      try {
        const item = await new ItemReader(stream).next(8 * 1024)
        const payload = protocol === QUERY_V1 ? item.value.PayloadCID : item.value[0]
        const answer = payload.equals(root)
          ? {
              Status: QueryResponseStatus.Available,
              PieceCIDFound: QueryItemStatus.Available,
              Size: size,
              PaymentAddress: payment,
              MinPricePerByte: new Uint8Array(0),
              MaxPaymentInterval: 0,
              MaxPaymentIntervalIncrease: 0,
              Message: '',
              UnsealPrice: new Uint8Array(0)
            }
          : notFound(payment)
        stream.send(encodeResponse(protocol, answer))
        await stream.close()
        served.queries += 1
      } catch (e) {
        stream.abort(e)
      }
    })
  }
  host.handle(DEAL, async stream => {
    try {
      const { value: proposal } = await new ItemReader(stream).next(16 * 1024)
      const id = proposal.ID
      const free = proposal.Params.PricePerByte.length === 0 && proposal.Params.UnsealPrice.length === 0
      if (!proposal.PayloadCID.equals(root) || !free) {
        await writeItem(stream, { Status: DealStatus.Rejected, ID: id, PaymentOwed: new Uint8Array(0), Message: 'only the free lorem DAG is served here' })
        await stream.close()
        return
      }
      await writeItem(stream, { Status: DealStatus.Accepted, ID: id, PaymentOwed: new Uint8Array(0), Message: '' })
      const blocks = [...explore(root, store)]
      for (let i = 0; i < blocks.length; i += BATCH) {
        const batch = blocks.slice(i, i + BATCH)
        const last = i + BATCH >= blocks.length
        await writeItem(stream, {
          Status: last ? DealStatus.Completed : DealStatus.Ongoing,
          ID: id,
          PaymentOwed: new Uint8Array(0),
          Message: '',
          Blocks: batch.map(b => ({ Prefix: prefixBytes(b.cid), Data: b.bytes }))
        })
        served.blocks += batch.length
      }
      await stream.close()
      served.deals += 1
    } catch (e) {
      stream.abort(e)
    }
  })
  return served
}

export async function run (c) {
  const provider = await node({ listen: true })
  try {
    const served = serve(provider, c.dag.root, c.dag.store)
    const addr = provider.getMultiaddrs().find(a => a.toString().startsWith('/ip4/127.0.0.1/'))
    const client = await c.rm.init('client')
    const out = join(c.workdir, 'retrieved.txt')
    const v = await c.rm.json(client.home, ['retrieve', addr.toString(), c.dag.root.toString(), '-o', out])
    const file = readFileSync(out)
    if (!file.equals(c.lorem)) throw new Error(`rm retrieve wrote ${file.length} bytes that differ from lorem.txt`)
    if (served.deals !== 1 || served.queries < 1) throw new Error(`served ${JSON.stringify(served)}`)
    return `rm retrieve: ${v.status ?? 'done'}; ${served.queries} query, ${served.blocks} blocks served, file equal`
  } finally {
    await provider.stop()
  }
}
