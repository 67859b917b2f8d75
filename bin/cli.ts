/**
 * The rp4 command: argv or a YAML file → the options `createProxy` takes → a running proxy.
 * Nothing here knows HTTP or the options themselves: flags.ts maps flags (derived from the
 * schema), load.ts reads files; this file dispatches commands, reports errors on stderr and sets
 * exit codes.
 */
import { readFileSync } from 'node:fs'
import { hostPort, listenFailure, logProxyEvents, startup } from './report.js'
import { describeSystemError } from '../lib/core/errors.js'
import { buildModel, createProxy, parseHostPort, type Model, type ProxyOptions, type Proxy } from '../lib/index.js'
import { workerCount } from '../lib/config/build.js'
import { UsageError, flagDefs, flagsToOptions, optionsHelp, parseCommandLine, toYaml, type CommandLine } from '../lib/config/flags.js'
import { absoluteFiles, loadConfig } from '../lib/config/load.js'
import { ConfigError, type Problem } from '../lib/config/problems.js'

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

const USAGE = `rp4 ${VERSION} - reverse proxy, HTTP/1.1 and TCP

Usage:
  rp4 listen [HOST]:PORT --to HOST:PORT [--to HOST:PORT ...] [options]
  rp4 listen [HOST]:PORT --to HOST:PORT --tcp [options]      raw TCP relay
  rp4 run FILE                the proxy a YAML configuration file describes;
                              SIGHUP reads FILE again (a bad file changes nothing)
  rp4 reload [HOST:]PORT [--admin-token-file FILE]
                              make a running rp4 (rp4 run FILE, with an admin
                              endpoint there) read its file again; kill -HUP too
  rp4 check FILE              every problem of a configuration file (exit 2 if any)
  rp4 config --from-flags [HOST]:PORT --to HOST:PORT [options]
                              print the YAML file this command line stands for
  rp4 demo [[HOST]:PORT]      a demo origin with rp4 in front (default 127.0.0.1:8080)
  rp4 --help | --version

  [HOST]:PORT        where to accept connections; ":8080" or "8080" = every
                     interface (IPv4 and IPv6); "[::1]:8080" for an IPv6 address

  On one port rp4 tells protocols apart by the first bytes of each connection:
  HTTP/1.x is proxied; TLS is terminated (with --cert) or relayed untouched
  (by --sni). Anything else is closed, unless --tcp-to names where to relay it
  as TCP: then also TLS without a certificate, and a client silent for
  --detect-timeout (the server speaks first), go there.

${optionsHelp()}
  DUR is a number with a unit: 500ms, 5s, 2m, 1h (a bare number means
  milliseconds). BYTES is a number of bytes, or with a unit: 64k, 1m, 1g.

Exit status:
  0    stopped by SIGTERM or SIGINT, after requests in flight finished
       (or --drain-timeout ran out);
       --help, --version; rp4 check found nothing wrong
  1    a runtime failure: the address cannot be listened on (in use, not
       permitted), or rp4 demo could not start
  2    a usage or configuration error: a bad flag, value, address or file, a
       certificate or access file that cannot be used
  130  a second SIGTERM or SIGINT cut that wait short

Examples:
  rp4 listen :8080 --to 127.0.0.1:3000
  rp4 listen 127.0.0.1:8080 --to 10.0.0.5:80 --to 10.0.0.6:80 --timeout 30s
  rp4 listen :5432 --to 10.0.0.7:5432 --tcp
  rp4 listen :443 --to 127.0.0.1:3000 --cert site.pem --key site.key
  rp4 listen :443 --to 10.0.0.5:443 --sni db.example.com=10.0.0.9:443
  rp4 listen :8080 --to 127.0.0.1:3000 --tcp-to 127.0.0.1:22
  rp4 listen :8080 --to https://api.internal:8443 --ca internal-ca.pem
  rp4 listen :8080 --to 127.0.0.1:3000 --allow 10.0.0.0/8 --deny 10.0.9.0/24
  rp4 config --from-flags :8080 --to 127.0.0.1:3000 --timeout 5s > rp4.yaml
  rp4 check rp4.yaml && rp4 run rp4.yaml
`

type Command =
  | { kind: 'help' | 'version' }
  | { kind: 'demo', listen: string }
  | { kind: 'proxy', options: ProxyOptions, quiet: boolean, file: string | null }
  | { kind: 'reload', admin: string, tokenFile: string | null }
  | { kind: 'check', file: string }
  | { kind: 'print', text: string }

/** The one positional argument of `command`, or a UsageError. */
function argument (line: CommandLine, what: string): string {
  const [command, value, extra] = line.positionals
  if (value === undefined) throw new UsageError(`${command}: missing ${what}`)
  if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`)
  return value
}

/** Flags that set options do not mix with a file (the file says it all), nor with the demo. */
function noOptionFlags (line: CommandLine, command: string): void {
  if (line.given.length === 0) return
  const flags = `${line.given.map(g => g.def.spec.name).join(', ')} ${line.given.length > 1 ? 'do' : 'does'} not apply`
  throw new UsageError(command === 'demo' ? `rp4 demo takes no options: ${flags}` : `rp4 ${command} takes its options from the file: ${flags} (write it in the file)`)
}

/** argv (without node and the script) → what to do; a UsageError or ConfigError naming what is wrong. */
function parseCli (argv: string[]): Command {
  const line = parseCommandLine(argv)
  if (line.help) return { kind: 'help' }
  if (line.version) return { kind: 'version' }
  const command = line.positionals[0]
  if (command === undefined) throw new UsageError('missing command: rp4 listen [HOST]:PORT --to HOST:PORT, or rp4 run FILE')
  if (line.fromFlags && command !== 'config') throw new UsageError(`--from-flags is for rp4 config, not rp4 ${command}`)
  switch (command) {
    case 'demo': {
      noOptionFlags(line, command)
      const listen = line.positionals[1] ?? '127.0.0.1:8080'
      const check = parseHostPort(listen, { hostRequired: false, portZero: true })
      if (typeof check === 'string') throw new UsageError(`demo address: ${check}`)
      return { kind: 'demo', listen }
    }
    case 'listen': {
      const options = flagsToOptions(argument(line, 'address [HOST]:PORT'), line)
      return { kind: 'proxy', options, quiet: line.quiet, file: null }
    }
    case 'run': {
      noOptionFlags(line, command)
      const file = argument(line, 'FILE (a YAML configuration file)')
      const { options } = loadConfig(file)
      return { kind: 'proxy', options, quiet: line.quiet, file }
    }
    case 'reload': {
      const tokenFile = line.given.find(g => g.def.spec.name === '--admin-token-file')
      if (line.given.length > (tokenFile === undefined ? 0 : 1)) throw new UsageError('rp4 reload takes only --admin-token-file')
      const admin = argument(line, 'the admin endpoint [HOST:]PORT (admin.listen, --admin)')
      const check = parseHostPort(admin, { hostRequired: false, portZero: false })
      if (typeof check === 'string') throw new UsageError(`reload: admin endpoint ${admin}: ${check}`)
      return { kind: 'reload', admin, tokenFile: tokenFile === undefined ? null : String(tokenFile.values[tokenFile.values.length - 1]) }
    }
    case 'check':
      noOptionFlags(line, command)
      return { kind: 'check', file: argument(line, 'FILE (a YAML configuration file)') }
    case 'config': {
      if (!line.fromFlags) throw new UsageError('rp4 config: --from-flags [HOST]:PORT --to HOST:PORT [options] (what to print the configuration of)')
      const options = flagsToOptions(argument(line, 'address [HOST]:PORT'), line)
      // file names as the command line meant them: relative to here, wherever the file goes
      return { kind: 'print', text: toYaml(absoluteFiles(options, process.cwd()), `rp4 ${argv.join(' ')}`) }
    }
  }
  throw new UsageError(`unknown command "${command}" (the commands are listen, run, reload, check, config and demo)`)
}

/** rp4 check: every problem of the file on stderr, as FILE:LINE:COL: ...; 0 when there is none. */
function check (file: string): number {
  try {
    const { model } = loadConfig(file)
    process.stdout.write(`${file}: ok: ${model.listeners.length} listener${model.listeners.length === 1 ? '' : 's'}, ${model.routes.length} route${model.routes.length === 1 ? '' : 's'}, ${model.upstreams.size} upstream group${model.upstreams.size === 1 ? '' : 's'}\n`)
    return 0
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(err.message + '\n')
    process.stderr.write(`rp4: ${file}: ${err.lines.length} problem${err.lines.length === 1 ? '' : 's'}\n`)
    return 2
  }
}

async function main (): Promise<number> {
  let cli: Command
  try {
    cli = parseCli(process.argv.slice(2))
  } catch (err) {
    if (err instanceof UsageError) {
      for (const line of err.message.split('\n')) process.stderr.write(`rp4: ${line}\n`)
      process.stderr.write('Try "rp4 --help".\n')
      return 2
    }
    if (err instanceof ConfigError) {
      // a file's problems, each as FILE:LINE:COL: ...
      process.stderr.write(err.message + '\n')
      return 2
    }
    throw err
  }
  switch (cli.kind) {
    case 'help':
      process.stdout.write(USAGE)
      return 0
    case 'version':
      process.stdout.write(VERSION + '\n')
      return 0
    case 'print':
      process.stdout.write(cli.text)
      return 0
    case 'check':
      return check(cli.file)
    case 'reload':
      return await askReload(cli.admin, cli.tokenFile)
    case 'demo':
      try {
        // node:http (the demo origin's) is loaded by the demo alone, not by every serving process
        const { runDemo } = await import('./demo.js')
        await runDemo(cli.listen)
      } catch (err) {
        process.stderr.write(`rp4 demo: ${(err as Error).message}\n`)
        return 1
      }
      return 0
  }
  return await serve(cli.options, cli.quiet, cli.file)
}

/**
 * rp4 reload [HOST:]PORT: POST /reload to a running rp4's admin endpoint (127.0.0.1 when no host
 * is given), print its answer; 0 when it reloaded. `kill -HUP` does the same without the endpoint.
 */
async function askReload (admin: string, tokenFile: string | null): Promise<number> {
  const { host, port } = parseHostPort(admin, { hostRequired: false, portZero: false }) as { host: string, port: number }
  const headers: Record<string, string> = {}
  if (tokenFile !== null) {
    try {
      headers.authorization = `Bearer ${readFileSync(tokenFile, 'utf8').split('\n')[0].trim()}`
    } catch (err) {
      process.stderr.write(`rp4: --admin-token-file ${tokenFile}: ${describeSystemError(err as Error)}\n`)
      return 2
    }
  }
  const url = `http://${host === '' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host}:${port}/reload`
  try {
    const res = await fetch(url, { method: 'POST', headers })
    const text = await res.text()
    ;(res.ok ? process.stdout : process.stderr).write(text)
    return res.ok ? 0 : 1
  } catch (err) {
    process.stderr.write(`rp4: reload: cannot reach the admin endpoint at ${url}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}\n`)
    return 1
  }
}

/** A problem of an option that a flag sets, as `--flag: message`; null when no flag sets it. */
function asFlag (problem: Problem): string | null {
  const parts = problem.path.map(part => typeof part === 'number' ? '[]' : String(part))
  // the flag that set the path, or the one that set a value above it (--static DIR: static.root)
  for (let n = parts.length; n > 0; n--) {
    const path = parts.slice(0, n).join('.')
    // a list item (--ca FILE given twice) is the flag of the list
    const def = flagDefs().find(d => d.path.join('.') === path) ?? flagDefs().find(d => d.path.join('.') + '.[]' === path)
    if (def !== undefined) return `${def.spec.name}: ${problem.message}`
  }
  return null
}

/** A configuration that cannot be served, said with the flag that set it where one did; exit 2. */
function unusable (err: unknown): number {
  if (err instanceof ConfigError) {
    // what only building the model finds (a file that cannot be read), said with the flag that set it
    for (const problem of err.problems) process.stderr.write(`rp4: ${asFlag(problem) ?? err.lines[err.problems.indexOf(problem)]}\n`)
    return 2
  }
  process.stderr.write(`rp4: ${(err as Error).message}\n`)
  return 2
}

async function serve (options: ProxyOptions, quiet: boolean, file: string | null): Promise<number> {
  const problems: Problem[] = []
  const workers = workerCount(options.workers, problems)
  if (problems.length > 0) return unusable(new ConfigError(problems))
  let note = ''
  if (workers > 1) {
    // the primary of workers serves nothing itself (primary.ts); workers: 1 goes on below, one process
    let model: Model
    try {
      model = buildModel(options)
    } catch (err) {
      return unusable(err)
    }
    // ACME's HTTP-01 and TLS-ALPN-01 challenges are answered by the process that ordered the
    // certificate, and the CA's check may reach any worker: ACME runs in one process for now
    if (!model.listeners.some(l => l.tls?.acme != null)) {
      // loaded only here: one process never pays for cluster and the primary's code at startup
      const { runPrimary } = await import('./primary.js')
      return await runPrimary({ options, model, quiet, file, version: VERSION })
    }
    if (options.workers !== undefined && options.workers !== 'auto') {
      process.stderr.write(`rp4: workers ${workers}: ACME (tls.acme, --acme) needs one process for now (the CA's challenge request may reach a worker other than the one that asked for the certificate): set workers: 1 (--workers 1), or leave workers at auto\n`)
      return 2
    }
    note = '; one process (workers: auto), since ACME needs one'
  }
  let proxy: Proxy
  try {
    proxy = createProxy(options)
  } catch (err) {
    return unusable(err)
  }
  const log = (line: string): void => { if (!quiet) process.stderr.write(line + '\n') }
  logProxyEvents(proxy, log, 'rp4: ')
  // logrotate moved the access log away: write to a new file of the same name
  process.on('SIGUSR1', () => proxy.reopenLogs())
  if (file !== null) {
    // the file is read and checked whole; any problem keeps the running configuration
    proxy.reload = async () => {
      try {
        const { notes } = await proxy.update(loadConfig(file).options)
        log(`rp4: ${file} reloaded${notes.map(note => `; ${note}`).join('')}`)
        return { ok: true }
      } catch (err) {
        const problems = err instanceof ConfigError ? [...err.lines] : [`${describeSystemError(err as Error)}`]
        log(`rp4: ${file} not reloaded, the running configuration stays:`)
        for (const problem of problems) log(`rp4:   ${problem}`)
        return { ok: false, problems }
      }
    }
  }
  // SIGHUP would end the process by default: here it reloads, or says why it cannot
  process.on('SIGHUP', () => {
    if (proxy.reload === null) log('rp4: SIGHUP: rp4 listen has no file to read again (rp4 run FILE reloads FILE)')
    else void proxy.reload()
  })

  try {
    await proxy.listen()
    const admin = proxy.adminAddress()
    log(`rp4 ${VERSION} listening on ${startup(proxy.model, proxy.addresses())}${note}${admin === null ? '' : `; admin endpoint on ${hostPort(admin)}`}`)
  } catch (err) {
    const where = listenFailure(err as NodeJS.ErrnoException, typeof options.listen === 'string' || typeof options.listen === 'number' ? String(options.listen) : '?')
    process.stderr.write(`rp4: cannot listen on ${where}: ${describeSystemError(err as Error)}\n`)
    return 1 // not a usage error: the same command works once the address is free
  }

  return await new Promise<number>(resolve => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) {
        resolve(130) // a second signal: do not wait any longer
        return
      }
      stopping = true
      const seconds = proxy.model.drainTimeout / 1000
      log(`rp4: ${signal}: draining: not accepting, waiting up to ${seconds}s for requests in flight (a second ${signal} exits at once)`)
      void proxy.drain().then(({ cut }) => {
        if (cut > 0) log(`rp4: ${cut} connection${cut === 1 ? '' : 's'} still open after ${seconds}s (drainTimeout): closed`)
        resolve(0)
      })
    }
    // a drain asked for through the admin endpoint ends the process as SIGTERM's does
    proxy.once('close', () => resolve(0))
    process.on('SIGINT', () => stop('SIGINT'))
    process.on('SIGTERM', () => stop('SIGTERM'))
  })
}

main().then(code => process.exit(code), (err: unknown) => {
  process.stderr.write(`rp4: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
