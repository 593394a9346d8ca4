// Queries on both protocol versions, answers checked field by field and byte by byte.

import { addressString, tokenValue } from '../lib/filecoin.js'
import { open } from '../lib/host.js'
import {
  ItemReader, QUERY_V0, QUERY_V1, QueryItemStatus, QueryResponseStatus, decodeResponse,
  encodeQuery, encodeResponse, hex, sameBytes
} from '../lib/wire.js'

export const NOT_FOUND = 'piece info for cid not found (deal has not been added to a piece yet)'

/**
 * One query: writes it, closes the writing side, reads one answer. Returns
 * { response, bytes } or { refused: true } when the provider closed the stream without an
 * answer (a clean end of stream).
 */
export async function query (host, addr, protocol, payload, piece = null, options = {}) {
  const stream = await open(host, addr, protocol, options)
  stream.send(encodeQuery(protocol, payload, piece))
  await stream.close()
  const item = await new ItemReader(stream).next(256 * 1024)
  if (item == null) return { refused: true }
  return { response: decodeResponse(protocol, item.value), bytes: item.bytes }
}

/** Checks every field of `got` against `want` (token amounts and addresses compared as values). */
export function checkFields (got, want, what) {
  const show = {
    PaymentAddress: a => addressString(a),
    MinPricePerByte: tokenValue,
    UnsealPrice: tokenValue
  }
  const fields = Object.keys(want)
  if (Object.keys(got).sort().join() !== fields.sort().join()) {
    throw new Error(`${what}: fields ${Object.keys(got)} differ from ${fields}`)
  }
  for (const f of fields) {
    const view = show[f] ?? (v => v)
    const [g, w] = [view(got[f]), view(want[f])]
    if (String(g) !== String(w)) throw new Error(`${what}: ${f} is ${g}, expected ${w}`)
  }
}

/** The answer go-fil-markets gives when the payload is not available. */
export function notFound (paymentAddress) {
  return {
    Status: QueryResponseStatus.Unavailable,
    PieceCIDFound: QueryItemStatus.Unavailable,
    Size: 0,
    PaymentAddress: paymentAddress,
    MinPricePerByte: new Uint8Array(0),
    MaxPaymentInterval: 0,
    MaxPaymentIntervalIncrease: 0,
    Message: NOT_FOUND,
    UnsealPrice: new Uint8Array(0)
  }
}

/**
 * Both versions against one provider: `cases` is a list of
 * { what, payload, piece, want } with `want` a full QueryResponse map.
 */
export async function run (ctx, provider, cases) {
  const checked = []
  for (const protocol of [QUERY_V1, QUERY_V0]) {
    for (const c of cases) {
      const what = `${c.what} on ${protocol}`
      const { response, bytes, refused } = await query(ctx.client, provider.addr, protocol, c.payload, c.piece)
      if (refused) throw new Error(`${what}: closed without an answer`)
      checkFields(response, c.want, what)
      // Byte for byte what go-fil-markets' encoder writes for these values: the tuple
      // form, or the canonical map (cbor-gen's key order, shortest first).
      const expected = encodeResponse(protocol, c.want)
      if (!sameBytes(bytes, expected)) {
        throw new Error(`${what}: bytes ${hex(bytes)}, expected ${hex(expected)}`)
      }
      checked.push(what)
    }
  }
  return `${checked.length} answers equal field by field and byte by byte`
}
