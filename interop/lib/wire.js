// go-fil-markets' wire format: DAG-CBOR items back to back on a libp2p stream (no length
// prefix), the messages of the query and deal protocols, and the two query encodings.

import * as dagCbor from '@ipld/dag-cbor'
import * as cborg from 'cborg'

export const QUERY_V1 = '/fil/retrieval/qry/1.0.0'
export const QUERY_V0 = '/fil/retrieval/qry/0.0.1'
export const DEAL = '/fil/retrieval/0.0.1'

/** Largest item read from rm (a DealResponse carries up to ~4 MiB of blocks). */
export const MAX_ITEM = 8 << 20

/** go-fil-markets' QueryResponseStatus and DealStatus numbers used here. */
export const QueryResponseStatus = { Available: 0, Unavailable: 1, Error: 2 }
export const QueryItemStatus = { Available: 0, Unavailable: 1, Unknown: 2 }
export const DealStatus = {
  Accepted: 6,
  FundsNeededUnseal: 7,
  Rejected: 9,
  FundsNeeded: 10,
  Ongoing: 13,
  FundsNeededLastPayment: 14,
  Completed: 15,
  DealNotFound: 16,
  Errored: 17
}

/** The tuple order of QueryResponse (the 0.0.1 query protocol). */
const RESPONSE_FIELDS = ['Status', 'PieceCIDFound', 'Size', 'PaymentAddress', 'MinPricePerByte',
  'MaxPaymentInterval', 'MaxPaymentIntervalIncrease', 'Message', 'UnsealPrice']

/** Reads DAG-CBOR items from a stream, one at a time, with a size cap. */
export class ItemReader {
  constructor (stream) {
    this.source = stream[Symbol.asyncIterator]()
    this.buf = new Uint8Array(0)
    this.ended = false
  }

  async more () {
    const { value, done } = await this.source.next()
    if (done) {
      this.ended = true
      return
    }
    const chunk = value instanceof Uint8Array ? value : value.subarray()
    const joined = new Uint8Array(this.buf.length + chunk.length)
    joined.set(this.buf)
    joined.set(chunk, this.buf.length)
    this.buf = joined
  }

  /**
   * The next item as { value, bytes }, or null at a clean end of stream (no bytes of a
   * next item). Throws on a stream ending inside an item, on malformed bytes or when the
   * item exceeds `cap`.
   */
  async next (cap = MAX_ITEM) {
    for (;;) {
      if (this.buf.length > 0) {
        try {
          const [value, rest] = cborg.decodeFirst(this.buf, dagCbor.decodeOptions)
          const bytes = this.buf.subarray(0, this.buf.length - rest.length)
          this.buf = rest
          return { value, bytes }
        } catch (e) {
          if (!/end of|not enough|unexpected end/i.test(String(e.message))) throw e
        }
      }
      if (this.buf.length > cap) throw new Error(`item over ${cap} bytes`)
      if (this.ended) {
        if (this.buf.length === 0) return null
        throw new Error(`stream ended inside an item (${this.buf.length} bytes)`)
      }
      await this.more()
    }
  }
}

/** Writes one DAG-CBOR item and returns its bytes. */
export async function writeItem (stream, value) {
  const bytes = dagCbor.encode(value)
  if (!stream.send(bytes)) await stream.onDrain()
  return bytes
}

/** A Query in the version's encoding. */
export function encodeQuery (protocol, payloadCid, pieceCid = null) {
  if (protocol === QUERY_V1) {
    return dagCbor.encode({ PayloadCID: payloadCid, QueryParams: { PieceCID: pieceCid } })
  }
  return dagCbor.encode([payloadCid, [pieceCid]])
}

/** A QueryResponse of either encoding as a map with go-fil-markets' field names. */
export function decodeResponse (protocol, value) {
  if (protocol === QUERY_V1) return value
  if (!Array.isArray(value) || value.length !== RESPONSE_FIELDS.length) {
    throw new Error(`not a tuple QueryResponse: ${JSON.stringify(value)}`)
  }
  return Object.fromEntries(RESPONSE_FIELDS.map((f, i) => [f, value[i]]))
}

/** A QueryResponse map in the version's encoding. */
export function encodeResponse (protocol, response) {
  if (protocol === QUERY_V1) return dagCbor.encode(response)
  return dagCbor.encode(RESPONSE_FIELDS.map(f => response[f]))
}

/** go-ipld-prime's explore-all selector: ExploreRecursive(all, ExploreAll(recurse)). */
export const EXPLORE_ALL = { R: { l: { none: {} }, ':>': { a: { '>': { '@': {} } } } } }

/** Equal bytes. */
export function sameBytes (a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

export function hex (bytes) {
  return Buffer.from(bytes).toString('hex')
}
