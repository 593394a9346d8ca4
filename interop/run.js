// rm's interop suite against js-libp2p 3: a real `rm serve`, an independent client, and a
// JS provider that rm's client retrieves from. Run by `cargo xtask interop` (and by
// `cargo xtask ci`); see README.md. Usage:
//
//   node run.js --rm <path to the rm binary> --root <repository root> [--deadline <s>]
//
// Exits 0 when every case passed, 1 otherwise; prints one line per case.

import './lib/polyfill.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const { values: opts } = parseArgs({
  options: {
    rm: { type: 'string' },
    root: { type: 'string' },
    deadline: { type: 'string', default: '600' },
    only: { type: 'string', multiple: true },
    keep: { type: 'boolean', default: false }
  }
})
if (!opts.rm || !opts.root) {
  console.error('usage: node run.js --rm <rm binary> --root <repository root> [--deadline <s>] [--only <case>]')
  process.exit(2)
}

const deadline = Number(opts.deadline) * 1000
const timer = setTimeout(() => {
  console.error(`interop: the suite did not finish in ${opts.deadline} s`)
  process.exit(1)
}, deadline)

const { suite } = await import('./cases/suite.js')
const workdir = mkdtempSync(join(tmpdir(), 'rm-interop-'))
let results
try {
  results = await suite({ rm: opts.rm, root: opts.root, workdir, only: opts.only })
} catch (e) {
  console.error(`interop: setup failed: ${e.stack ?? e}`)
  results = null
} finally {
  if (!opts.keep) rmSync(workdir, { recursive: true, force: true })
}
clearTimeout(timer)
if (results == null) process.exit(1)
const failed = results.filter(r => !r.ok)
console.log(`interop: ${results.length - failed.length} of ${results.length} cases passed`)
process.exit(failed.length === 0 ? 0 : 1)
