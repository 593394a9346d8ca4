// DAGs on the JS side: a multi-block UnixFS DAG of a file written as a CAR (imported into
// rm with `rm import --car`), and a client-side verifier that checks every block of a
// deal against its CID and the explore-all traversal order, with the JS IPLD libraries.

import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { CarWriter } from '@ipld/car'
import { blake2b } from '@noble/hashes/blake2.js'
import { UnixFS } from 'ipfs-unixfs'
import { importBytes } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'

/** An in-memory blockstore for the importer and the JS provider. */
export class MemoryBlockstore {
  constructor () { this.blocks = new Map() }
  async put (cid, bytes) { this.blocks.set(cid.toString(), bytes); return cid }
  get (cid) {
    const bytes = this.blocks.get(cid.toString())
    if (bytes == null) throw new Error(`block ${cid} not found`)
    return bytes
  }
}

/**
 * Imports `bytes` as UnixFS: CIDv1, raw leaves of `chunkSize` bytes, a balanced tree of
 * `width` links per node. Returns the root and the blockstore.
 */
export async function unixfsDag (bytes, { chunkSize = 1024, width = 8 } = {}) {
  const store = new MemoryBlockstore()
  const { cid } = await importBytes(bytes, store, {
    cidVersion: 1,
    rawLeaves: true,
    chunker: fixedSize({ chunkSize }),
    layout: balanced({ maxChildrenPerNode: width })
  })
  return { root: cid, store }
}

/** The CAR v1 of the DAG under `root`, in explore-all order. */
export async function carBytes (root, store) {
  const { writer, out } = CarWriter.create([root])
  const chunks = []
  const collected = (async () => { for await (const c of out) chunks.push(c) })()
  for (const { cid, bytes } of explore(root, store)) await writer.put({ cid, bytes })
  await writer.close()
  await collected
  return Buffer.concat(chunks)
}

/** The links of a block, in the order go-ipld-prime's explore-all visits them. */
export function links (cid, bytes) {
  switch (cid.code) {
    case raw.code: return []
    case dagPb.code: return dagPb.decode(bytes).Links.map(l => l.Hash)
    case dagCbor.code: {
      const out = []
      const walk = v => {
        const asCid = CID.asCID(v)
        if (asCid) out.push(asCid)
        else if (Array.isArray(v)) v.forEach(walk)
        else if (v && typeof v === 'object' && !(v instanceof Uint8Array)) Object.values(v).forEach(walk)
      }
      walk(dagCbor.decode(bytes))
      return out
    }
    default: throw new Error(`codec 0x${cid.code.toString(16)} not supported`)
  }
}

/** Blocks of the DAG under `root` in explore-all (depth-first, link order) order. */
export function * explore (root, store) {
  const stack = [root]
  while (stack.length > 0) {
    const cid = stack.pop()
    const bytes = store.get(cid)
    yield { cid, bytes }
    stack.push(...links(cid, bytes).reverse())
  }
}

/** The Go `cid.Prefix().Bytes()` of a CID: varints of version, codec, hash code, length. */
export function prefixBytes (cid) {
  const out = []
  for (let n of [cid.version, cid.code, cid.multihash.code, cid.multihash.size]) {
    do {
      let b = n & 0x7f
      n = Math.floor(n / 128)
      if (n > 0) b |= 0x80
      out.push(b)
    } while (n > 0)
  }
  return Uint8Array.from(out)
}

function readVarints (bytes, count) {
  const out = []
  let i = 0
  for (let k = 0; k < count; k++) {
    let n = 0
    let mul = 1
    for (;;) {
      if (i >= bytes.length) throw new Error('truncated block prefix')
      const b = bytes[i++]
      n += (b & 0x7f) * mul
      mul *= 128
      if ((b & 0x80) === 0) break
    }
    out.push(n)
  }
  if (i !== bytes.length) throw new Error('trailing bytes in block prefix')
  return out
}

/** The CID of a block on the wire: its prefix, and a fresh hash of its data. */
export async function blockCid (prefix, data) {
  const [version, codec, hashCode, length] = readVarints(prefix, 4)
  let digest
  if (hashCode === sha256.code) digest = await sha256.digest(data)
  else if (hashCode === identity.code) digest = identity.digest(data)
  else if (hashCode === 0xb220) digest = Digest.create(0xb220, blake2b(data, { dkLen: 32 }))
  else throw new Error(`hash 0x${hashCode.toString(16)} not supported`)
  if (digest.size !== length) throw new Error('digest length differs from the prefix')
  return version === 0 ? CID.createV0(digest) : CID.createV1(codec, digest)
}

/**
 * Checks blocks as they arrive: each must hash to the next CID of the explore-all
 * traversal of `root`. Collects the file's bytes (UnixFS data of dag-pb nodes, raw leaves).
 */
export class Verifier {
  constructor (root) {
    this.stack = [root]
    this.parts = []
    this.blocks = 0
    this.bytes = 0
  }

  async push ({ Prefix, Data }) {
    const expected = this.stack.pop()
    if (expected == null) throw new Error('a block after the end of the traversal')
    const cid = await blockCid(Prefix, Data)
    if (!cid.equals(expected)) throw new Error(`block ${this.blocks} is ${cid}, expected ${expected}`)
    this.stack.push(...links(cid, Data).reverse())
    if (cid.code === raw.code) this.parts.push(Data)
    else if (cid.code === dagPb.code) {
      const node = dagPb.decode(Data)
      if (node.Data) {
        const data = UnixFS.unmarshal(node.Data).data
        if (data) this.parts.push(data)
      }
    }
    this.blocks += 1
    this.bytes += Data.length
  }

  get done () { return this.stack.length === 0 }

  file () { return Buffer.concat(this.parts) }
}
