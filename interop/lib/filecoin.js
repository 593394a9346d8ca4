// Filecoin addresses, token amounts and payment-channel vouchers, written from the
// Filecoin spec's encodings: what rm's `rm-types` (address.rs, token.rs, paych.rs) and
// `rm-paych` (wallet.rs, voucher.rs, ledger.rs) must accept from an independent signer.

import * as dagCbor from '@ipld/dag-cbor'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { blake2b } from '@noble/hashes/blake2.js'
import { base32 } from 'multiformats/bases/base32'

const blake = (bytes, dkLen) => blake2b(bytes, { dkLen })

/** An address from its bytes: protocol byte, then payload. */
export function addressString (bytes, prefix = 'f') {
  const protocol = bytes[0]
  const payload = bytes.subarray(1)
  if (protocol === 0) {
    let id = 0n
    let shift = 0n
    for (const b of payload) {
      id |= BigInt(b & 0x7f) << shift
      shift += 7n
    }
    return `${prefix}0${id}`
  }
  const checksum = blake(bytes, 4)
  const body = new Uint8Array(payload.length + 4)
  body.set(payload)
  body.set(checksum, payload.length)
  return `${prefix}${protocol}${base32.baseEncode(body)}`
}

/** An address string's bytes (checksum checked). */
export function addressBytes (text) {
  const protocol = Number(text[1])
  if (protocol === 0) return idAddress(BigInt(text.slice(2)))
  const body = base32.baseDecode(text.slice(2))
  const bytes = Uint8Array.from([protocol, ...body.subarray(0, body.length - 4)])
  if (addressString(bytes, text[0]) !== text) throw new Error(`bad address checksum: ${text}`)
  return bytes
}

/** An f0 (ID) address's bytes. */
export function idAddress (id) {
  const out = [0]
  let n = BigInt(id)
  do {
    let b = Number(n & 0x7fn)
    n >>= 7n
    if (n > 0n) b |= 0x80
    out.push(b)
  } while (n > 0n)
  return Uint8Array.from(out)
}

/** A token amount (attoFIL) as Filecoin big-int bytes: empty for 0, else 0x00 + magnitude. */
export function tokenBytes (atto) {
  let n = BigInt(atto)
  if (n < 0n) throw new Error('negative amount')
  if (n === 0n) return new Uint8Array(0)
  const digits = []
  while (n > 0n) {
    digits.unshift(Number(n & 0xffn))
    n >>= 8n
  }
  return Uint8Array.from([0, ...digits])
}

/** Filecoin big-int bytes as a bigint. */
export function tokenValue (bytes) {
  if (bytes.length === 0) return 0n
  if (bytes[0] !== 0) throw new Error('negative amount')
  let n = 0n
  for (const b of bytes.subarray(1)) n = (n << 8n) | BigInt(b)
  return n
}

/** A secp256k1 key and its f1 address (blake2b-160 of the uncompressed public key). */
export function newWallet () {
  const secret = secp256k1.utils.randomSecretKey()
  const publicKey = secp256k1.getPublicKey(secret, false)
  const address = Uint8Array.from([1, ...blake(publicKey, 20)])
  return { secret, address }
}

/** Signs `message` the Filecoin way: type 1 (secp256k1), r ‖ s ‖ v over blake2b-256. */
export function sign (wallet, message) {
  const recovered = secp256k1.sign(blake(message, 32), wallet.secret, {
    prehash: false,
    format: 'recovered'
  })
  // noble gives v ‖ r ‖ s; Filecoin carries r ‖ s ‖ v after the type byte.
  return Uint8Array.from([1, ...recovered.subarray(1), recovered[0]])
}

/** A CBOR header of major type `major` with argument `n` (canonical, shortest). */
function header (major, n) {
  const m = major << 5
  if (n < 24) return [m | n]
  if (n < 0x100) return [m | 24, n]
  if (n < 0x10000) return [m | 25, n >> 8, n & 0xff]
  throw new Error('too long')
}

/**
 * The payment channel from `from` to `to` created with `nonce`, as an actor address:
 * blake2b-160 of the CBOR array [from, to, nonce] (addresses as byte strings). rm's ledger
 * learns a channel it never saw from the first voucher when its address derives this way.
 */
export function channelAddress (from, to, nonce) {
  const cbor = Uint8Array.from([0x83, ...header(2, from.length), ...from,
    ...header(2, to.length), ...to, ...header(0, nonce)])
  return Uint8Array.from([2, ...blake(cbor, 20)])
}

/** The 11-tuple of a voucher, in wire order, with `signature` (bytes or null). */
function voucherTuple (v, signature) {
  return [v.channel, 0, 0, new Uint8Array(0), null, v.lane, v.nonce, tokenBytes(v.amount), 0, [],
    signature]
}

/** A signed voucher for `{ channel, lane, nonce, amount }`: the CBOR tuple and its bytes. */
export function signVoucher (wallet, v) {
  const signingBytes = dagCbor.encode(voucherTuple(v, null))
  const tuple = voucherTuple(v, sign(wallet, signingBytes))
  return { tuple, bytes: dagCbor.encode(tuple) }
}
