/**
 * The CLI's flags as the schema derives them: argv → the flat options, problems named by the
 * flag as typed with the value as written, --help from the same annotations, and the YAML a
 * command line stands for, which loads back to the same model.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import t from 'tap'
import { CLI_FLAGS, UsageError, argText, flagDefs, flagsToOptions, optionsHelp, parseCommandLine, toYaml } from '../../lib/config/flags.js'
import { buildModel } from '../../lib/config/build.js'
import { parseOptions } from '../../lib/config/load.js'
import { parseBalance } from '../../lib/config/balance.js'
import { DEFAULT_BALANCE } from '../../lib/config/schema.js'

function options (...argv: string[]): Record<string, unknown> {
  const line = parseCommandLine(argv)
  return flagsToOptions(line.positionals[1], line) as Record<string, unknown>
}

function problems (...argv: string[]): readonly string[] {
  try {
    options(...argv)
  } catch (err) {
    if (err instanceof UsageError) return err.lines
    throw err
  }
  return []
}

t.test('argv → flat options, in the library units', async t => {
  t.same(options('listen', ':8080', '--to', '127.0.0.1:3000', '--to', 'https://api:8443', '--timeout', '5s', '--connect-timeout', '250',
    '--max-body-size', '10m', '--max-header-size', '16k', '--max-conns', '8', '--rate-limit', '2.5', '--rate-burst', '5',
    '--cert', 'a.pem', '--key', 'a.key', '--cert', 'b.pem', '--key', 'b.key', '--sni', 'db.example.com=10.0.0.9:443',
    '--tcp-to', '127.0.0.1:22', '--allow', '10.0.0.0/8', '--insecure-upstream', '--no-hide-headers', '--intercept-errors',
    '--allow-underscores-in-headers', '--max-connections-per-ip', '0', '--response-total-timeout', '0'), {
    listen: ':8080',
    targets: ['127.0.0.1:3000', 'https://api:8443'],
    tcpFallback: ['127.0.0.1:22'],
    tls: { certificates: [{ cert: 'a.pem', key: 'a.key' }, { cert: 'b.pem', key: 'b.key' }], passthrough: { 'db.example.com': '10.0.0.9:443' } },
    upstreamTls: { verify: false },
    timeouts: { connect: 250, response: 5000, responseTotal: 0 },
    upstream: { maxConnections: 8 },
    maxHeaderSize: 16_384,
    maxBodySize: 10_485_760,
    hideHeaders: [],
    interceptErrors: true,
    allowUnderscoresInHeaders: true,
    rateLimit: { rate: 2.5, burst: 5 },
    access: { allow: ['10.0.0.0/8'] },
    limits: { maxConnectionsPerIp: 0 },
  })
  const line = parseCommandLine(['listen', ':0', '--to', 'a:1', '-q', '--access-log'])
  t.same([line.quiet, line.help, line.version, line.positionals], [true, false, false, ['listen', ':0']])
  t.same(options('listen', ':0', '--to', 'a:1', '--access-log').accessLog, { file: '-' }, '--access-log alone, last: stderr')
  t.same(options('listen', ':0', '--access-log', '--to', 'a:1').accessLog, { file: '-' }, '--access-log alone, a flag next: stderr')
  t.same(options('listen', ':0', '--to', 'a:1', '--access-log', '/var/log/rp4.log', '--log-format', 'json').accessLog, { file: '/var/log/rp4.log', format: 'json' })
  t.same(options('listen', ':0', '--to', 'a:1', '--access-log=-x.log').accessLog, { file: '-x.log' }, '--access-log=FILE: any name')
  t.same(options('listen', ':0', '--to', 'a:1', '--drain-timeout', '30s').drainTimeout, 30_000)
  const proxied = options('listen', ':0', '--to', 'a:1', '--accept-proxy', '10.0.0.0/8', '--accept-proxy', '192.0.2.1', '--send-proxy', 'v2', '--admin', '9901')
  t.same([proxied.acceptProxy, proxied.sendProxy, proxied.admin], [{ from: ['10.0.0.0/8', '192.0.2.1'] }, 'v2', { listen: '9901' }])
  t.same(problems('listen', ':0', '--to', 'a:1', '--send-proxy', 'v3', '--accept-proxy', '10.0.0.0/33'), [
    '--send-proxy: must be one of v1, v2, got "v3"',
    '--accept-proxy: "10.0.0.0/33": the prefix length must be from 0 to 32',
  ], 'each named by its flag, with the value as written')
  t.same((options('listen', ':0', '--to', 'a:1', '--timeout', '1s', '--timeout', '2s') as { timeouts: unknown }).timeouts, { response: 2000 }, 'given twice: the last one counts')
})

t.test('problems: every one, named by the flag as typed, with the value as written', async t => {
  t.same(problems('listen', '127.0.0.1:99999', '--to', 'bad_host!:80', '--to', '127.0.0.1', '--tcp-idle-timeout', '25h', '--timeout', 'soon',
    '--allow', '10.0.0.0/40', '--deny', 'nope', '--max-connections', 'many', '--max-header-size', '10', '--rate-limit', '0'), [
    '--timeout soon: not a duration: 500ms, 5s, 2m, 1h (a number is milliseconds)',
    '--max-connections many: not a whole number',
    'listen address: port 99999 in "127.0.0.1:99999" is out of range (0-65535)',
    '--to: "bad_host!" in "bad_host!:80" is not a valid host name or IP address',
    '--to: "127.0.0.1" is not HOST:PORT',
    '--tcp-idle-timeout 25h: at most 24h',
    '--max-header-size 10: at least 256',
    '--rate-limit 0: at least 0.001',
    '--allow: "10.0.0.0/40": the prefix length must be from 0 to 32',
    '--deny: "nope" is not an IP address or CIDR range (e.g. 10.0.0.0/8, 2001:db8::/32)',
  ])
  t.same(problems('listen', ':0'), ['missing --to HOST:PORT (the backend to forward to)'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--rate-burst', '5'), ['--rate-burst needs --rate-limit'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--cert', 'a.pem', '--cert', 'b.pem', '--key', 'a.key'), ['2 --cert but 1 --key: give them in pairs, --cert FILE --key FILE'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--key', 'a.key'), ['0 --cert but 1 --key: give them in pairs, --cert FILE --key FILE'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--tcp-to', 'b:1', '--no-tcp-fallback'), ['--tcp-to and --no-tcp-fallback contradict each other'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--intercept-errors', '--backend-error-pages'), ['--intercept-errors and --backend-error-pages contradict each other'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--hide-header', 'Server', '--no-hide-headers'), ['--hide-header and --no-hide-headers contradict each other'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--sni', 'db.example.com'), ['--sni: "db.example.com" is not NAME=HOST:PORT'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--sni', '*.x=nohost'), ['--sni: "nohost" is not HOST:PORT'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--tcp-to', 'http://b:1'), ['--tcp-to: "http://b:1": a raw TCP backend is HOST:PORT, without a scheme'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--tcp', '--cert', 'a.pem', '--key', 'a.key', '--no-tcp-fallback'), [
    '--cert: cannot be combined with --tcp: a raw TCP relay neither terminates nor routes TLS',
    '--no-tcp-fallback: cannot be combined with --tcp: every connection is relayed to the targets, none falls back',
  ])
  t.throws(() => parseCommandLine(['listen', ':0', '--bogus']), { name: 'UsageError', message: "Unknown option '--bogus'. To specify a positional argument starting with a '-', place it at the end of the command after '--', as in '-- \"--bogus\"" })
  t.throws(() => parseCommandLine(['listen', ':0', '--to']), { message: /--to/ })
})

t.test('every flag the CLI had before the schema existed, same spelling', async t => {
  // bin/rp4.ts's own table before it was derived from the schema (after the fix/detect, fix/smuggle and fix/small merges)
  const before = ['to', 'connect-timeout', 'timeout', 'client-idle-timeout', 'request-head-timeout', 'request-body-timeout', 'response-total-timeout',
    'upstream-idle-timeout', 'failed-target-timeout', 'max-conns', 'max-queue', 'pipelining', 'max-pipelined', 'max-header-size', 'max-request-line',
    'max-headers', 'max-body-size', 'min-data-rate', 'hide-header', 'no-hide-headers', 'intercept-errors', 'backend-error-pages',
    'allow-underscores-in-headers', 'rate-limit', 'rate-burst', 'tcp', 'tcp-idle-timeout', 'detect-timeout', 'tcp-to', 'no-tcp-fallback', 'cert', 'key',
    'sni', 'tls-handshake-timeout', 'ca', 'insecure-upstream', 'allow', 'deny', 'access-file', 'max-connections', 'max-connections-per-ip',
    'access-log', 'quiet', 'help', 'version']
  const now = new Set([...flagDefs().map(d => d.spec.name), ...CLI_FLAGS.map(f => f.name)])
  for (const name of before) t.ok(now.has('--' + name), `--${name}`)
  t.equal(new Set(flagDefs().map(d => d.spec.name)).size, flagDefs().length, 'no flag defined twice')
})

t.test('--help: every flag, with its argument and default, by group', async t => {
  const help = optionsHelp()
  for (const def of flagDefs()) t.match(help, `  ${def.spec.name}${argText(def.spec)}`)
  for (const flag of CLI_FLAGS) t.match(help, flag.name)
  t.match(help, /^Backends:\n {2}--to HOST:PORT {14}a backend; repeat for several/)
  t.match(help, /--tcp-idle-timeout DUR {6}a relayed TCP connection \(raw, passthrough,\n {30}fallback\) with no byte either way is closed\n {30}\(default 1h\)/)
  t.match(help, /--max-body-size BYTES {7}largest request body; a larger one gets 413\n {30}\(default 1g\)/)
  t.match(help, /--max-connections-per-ip N {2}open connections per client IP[^]*?\(default 0 = no\s+cap\)/)
  for (const line of help.split('\n')) t.ok(line.length <= 80, `at most 80 columns: ${line}`)
})

t.test('rp4 config --from-flags: the full-form YAML of a command line, which loads back to the same model', async t => {
  const argv = ['listen', ':8080', '--to', '127.0.0.1:3000', '--to', 'https://api.internal:8443', '--timeout', '5s', '--tcp-idle-timeout', '2h',
    '--max-body-size', '10m', '--sni', '*.db.example.com=10.0.0.9:443', '--tcp-to', '127.0.0.1:22', '--ca', 'ca.pem', '--rate-limit', '2.5',
    '--hide-header', 'Server', '--allow', '10.0.0.0/8', '--connect-timeout', '1500']
  const yaml = toYaml(options(...argv) as never, 'rp4 ' + argv.join(' '))
  t.equal(yaml, `# rp4 listen :8080 --to 127.0.0.1:3000 --to https://api.internal:8443 --timeout 5s --tcp-idle-timeout 2h --max-body-size 10m --sni *.db.example.com=10.0.0.9:443 --tcp-to 127.0.0.1:22 --ca ca.pem --rate-limit 2.5 --hide-header Server --allow 10.0.0.0/8 --connect-timeout 1500

listeners:
  - name: default
    listen: :8080
    tcpFallback: tcp-fallback
    tls:
      passthrough:
        "*.db.example.com": passthrough-1
      cleartext: serve
    access:
      allow:
        - 10.0.0.0/8
    timeouts:
      tcpIdle: 2h
routes:
  - name: default
    proxy: default
    timeouts:
      response: 5s
    maxBodySize: 10m
    rateLimit:
      rate: 2.5
upstreams:
  default:
    targets:
      - 127.0.0.1:3000
      - https://api.internal:8443
    tls:
      ca:
        - ca.pem
    timeouts:
      connect: 1500ms
  tcp-fallback:
    targets:
      - 127.0.0.1:22
    timeouts:
      connect: 1500ms
  passthrough-1:
    targets:
      - 10.0.0.9:443
    timeouts:
      connect: 1500ms
http:
  hideHeaders:
    - Server
`)

  const dir = mkdtempSync(path.join(os.tmpdir(), 'rp4-flags-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const access = path.join(dir, 'access')
  writeFileSync(access, 'allow 10.0.0.0/8\n')
  const lines = [
    ['listen', ':8080', '--to', '127.0.0.1:3000'],
    ['listen', '5432', '--to', '10.0.0.7:5432', '--to', '10.0.0.8:5432', '--tcp', '--tcp-idle-timeout', '10m', '--max-connections', '50'],
    ['listen', '[::1]:0', '--to', 'https://10.0.0.5', '--insecure-upstream', '--intercept-errors', '--no-hide-headers', '--pipelining', '8', '--max-queue', '0',
      '--client-idle-timeout', '90s', '--request-head-timeout', '1500', '--request-body-timeout', '1m', '--upstream-idle-timeout', '5s',
      '--failed-target-timeout', '2s', '--detect-timeout', '1s', '--tls-handshake-timeout', '3s', '--max-pipelined', '4', '--max-request-line', '2k',
      '--max-headers', '50', '--min-data-rate', '0', '--rate-limit', '10', '--rate-burst', '20', '--deny', '10.0.9.0/24', '--access-file', access,
      '--max-connections-per-ip', '16', '--allow-underscores-in-headers', '--response-total-timeout', '1h'],
  ]
  for (const argv of lines) {
    const flat = options(...argv)
    const back = parseOptions(toYaml(flat as never), 'generated.yaml')
    t.ok(isDeepStrictEqual(buildModel(back), buildModel(flat)), argv.join(' '))
  }
})

t.test('balancing and health flags: the model they stand for, and their mistakes', async t => {
  const argv = ['listen', ':0', '--to', '10.0.0.1:80,weight=3', '--to', '10.0.0.2:80', '--to', '10.0.0.3:80,backup', '--balance', 'hash:header:X-User',
    '--hash-load-factor', '1.5', '--slow-start', '30s', '--panic-threshold', '40', '--health-check', '/healthz', '--retries', '2']
  const model = buildModel(options(...argv))
  const group = model.upstreams.get('default')!
  t.same(group.targets.map(x => [x.authority, x.weight, x.backup]), [['10.0.0.1:80', 3, false], ['10.0.0.2:80', 1, false], ['10.0.0.3:80', 1, true]])
  t.same(group.policy, { kind: 'hash', by: 'header', name: 'X-User', loadFactor: 1.5 })
  t.equal(group.slowStart, 30_000)
  t.equal(group.panicThreshold, 40)
  t.match(group.healthCheck, { kind: 'http', method: 'GET', path: '/healthz', statuses: [[200, 399]], interval: 5000, timeout: 2000, rise: 2, fall: 3, jitter: 0.1 })
  t.match(group.retries, { count: 2, statuses: [502, 503, 504], budgetPercent: 20, budgetMinConcurrency: 3, nonIdempotent: false })
  t.equal(buildModel(options('listen', ':0', '--to', 'a:1', '--health-check', 'tcp')).upstreams.get('default')!.healthCheck!.kind, 'tcp')
  t.same(buildModel(options('listen', ':0', '--to', 'a:1')).upstreams.get('default')!.policy, parseBalance(DEFAULT_BALANCE, 1.25), 'the default policy')
  // what the command line stands for loads back to the same model
  const back = buildModel(parseOptions(toYaml(options(...argv) as never), 'generated.yaml'))
  t.same(back.upstreams.get('default'), group)

  t.same(problems('listen', ':0', '--to', 'a:1', '--balance', 'fastest'), ['--balance: "fastest" is not a balancing policy (round-robin, least-conn, p2c, p2c-latency, hash:ip, hash:uri, hash:header:NAME, hash:cookie:NAME)'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--balance', 'hash:header:'), ['--balance: "hash:header:" names no header: write hash:header:NAME'])
  t.same(problems('listen', ':0', '--to', 'a:1,weight=0'), ['--to: weight 0 in "a:1,weight=0" is out of range (1-1000)'])
  t.same(problems('listen', ':0', '--to', 'a:1,heavy'), ['--to: "heavy" in "a:1,heavy" is not a backend option (weight=N, backup)'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--health-check', 'healthz'), ['--health-check: "healthz" is neither a path (/healthz) nor tcp'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--retries', '11'), ['--retries 11: at most 10'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--hash-load-factor', '0.5'), ['--hash-load-factor 0.5: at least 1'])
  t.same(problems('listen', ':0', '--to', 'a:1', '--panic-threshold', '101'), ['--panic-threshold 101: at most 100'])
})

t.test('--sticky-cookie: the sticky section it stands for', async t => {
  const group = buildModel(options('listen', ':0', '--to', 'a:1', '--sticky-cookie', 'lb')).upstreams.get('default')!
  t.same(group.sticky, { cookie: 'lb', maxAge: 0 })
  t.equal(buildModel(options('listen', ':0', '--to', 'a:1')).upstreams.get('default')!.sticky, null, 'off by default')
  t.same(problems('listen', ':0', '--to', 'a:1', '--sticky-cookie', 'a b'), ['--sticky-cookie: "a b" is not an HTTP token (letters, digits and !#$%&\'*+-.^_`|~)'])
})
