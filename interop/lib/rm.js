// The `rm` binary as child processes: homes, imports, asks, `rm serve`.

import { spawn, execFile } from 'node:child_process'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'

const exec = promisify(execFile)

/** Every `rm serve` still running; killed when this process exits, however it exits. */
const running = new Set()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

export class Rm {
  constructor (bin, workdir) {
    this.bin = bin
    this.workdir = workdir
    this.servers = []
  }

  /** Runs `rm --home <home> --json <args>` to its end (at most 120 s); the last JSON line. */
  async json (home, args) {
    try {
      const { stdout } = await exec(this.bin, ['--home', home, '--json', ...args], {
        timeout: 120_000,
        env: { ...process.env, RUST_LOG: process.env.RM_LOG ?? '' },
        maxBuffer: 16 << 20
      })
      return JSON.parse(stdout.trim().split('\n').pop())
    } catch (e) {
      throw new Error(`rm ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`)
    }
  }

  /** A new home; returns { home, peerId, wallet }. */
  async init (name) {
    const home = `${this.workdir}/${name}`
    const v = await this.json(home, ['init'])
    return { home, peerId: v.peer_id, wallet: v.wallet }
  }

  /**
   * `rm serve --listen /ip4/127.0.0.1/tcp/0` (HTTP and metrics on free ports) in the background; resolves with
   * { child, addr } once it prints its address. Every server is stopped by `stopAll`.
   */
  async serve (home) {
    const child = spawn(this.bin, ['--home', home, '--json', 'serve', '--listen', '/ip4/127.0.0.1/tcp/0',
      '--http-listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, RUST_LOG: process.env.RM_LOG ?? '' }
    })
    this.servers.push(child)
    running.add(child)
    child.once('exit', () => running.delete(child))
    const lines = createInterface({ input: child.stdout })
    const server = { child, events: [] }
    const listening = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('rm serve printed nothing in 60 s')), 60_000)
      child.once('exit', code => reject(new Error(`rm serve exited (${code})`)))
      lines.on('line', line => {
        const v = JSON.parse(line)
        server.events.push(v)
        if (v.event === 'listening') {
          clearTimeout(timer)
          resolve(v)
        }
      })
    })
    const v = await listening
    server.addr = v.addrs[0]
    server.peerId = v.peer_id
    return server
  }

  /** Stops a server with SIGTERM and waits for it (at most 30 s). */
  async stop (server) {
    const { child } = server
    if (child.exitCode != null || child.signalCode != null) return child.exitCode
    const exited = new Promise(resolve => child.once('exit', code => resolve(code)))
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    const code = await exited
    clearTimeout(timer)
    return code
  }

  async stopAll () {
    await Promise.all(this.servers.map(child => this.stop({ child })))
  }
}
