/**
 * nginx and HAProxy configured as the closest equivalents of rp4: one worker / one thread,
 * keep-alive to the client and to the origin, bodies streamed rather than spooled, no logging.
 * The configs are written to a fresh temporary directory per start, which also holds every
 * path nginx would otherwise want under /var (pid, temp files, error log).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * `compress`, `cache` and `static`: the same job in every row (rp4 --compress / --cache /
 * --static, nginx gzip / proxy_cache / root); HAProxy does none of the three as such.
 */
export type ProxyMode = 'http' | 'tcp' | 'compress' | 'compress-br' | 'cache' | 'static'

export interface ConfigInput {
  dir: string
  port: number
  originPort: number
  mode: ProxyMode
  /** static mode: the directory served. */
  staticDir?: string
}

/**
 * The static scenarios' files, made once per run: \`small\` (the origin's small body) and \`1m\`.
 * Both rows serve this directory.
 */
let staticDir: string | null = null
export function staticFiles (): string {
  if (staticDir !== null) return staticDir
  staticDir = mkdtempSync(join(tmpdir(), 'rp4-perf-static-'))
  writeFileSync(join(staticDir, 'small'), 'rp4 benchmark origin: this is the small response body used for the request rate scenarios.....\n')
  writeFileSync(join(staticDir, '1m'), Buffer.alloc(1024 * 1024, 'x'))
  process.once('exit', () => rmSync(staticDir!, { recursive: true, force: true }))
  return staticDir
}

/** rp4's flags for a mode, beside `listen` and `--to`: the same job as the other rows'. */
export function rp4ModeArgs (mode: ProxyMode): string[] {
  switch (mode) {
    case 'http': return []
    case 'tcp': return ['--tcp']
    case 'compress':
    case 'compress-br': return ['--compress']
    case 'cache': return ['--cache', '256m']
    case 'static': return ['--static', staticFiles()]
  }
}

/** What nginx does per mode, inside its server block, beside proxying. */
function nginxJob (mode: ProxyMode, dir: string): { http: string, location: string } {
  switch (mode) {
    case 'compress':
      // level 5 and brotli 4 are rp4's defaults; nginx has no brotli without a third-party module
      return { http: 'gzip on;\n  gzip_comp_level 5;\n  gzip_min_length 1024;\n  gzip_types application/json;\n  gzip_proxied any;\n  gzip_vary on;', location: '' }
    case 'cache':
      // proxy_cache needs buffered responses
      return {
        http: `proxy_cache_path ${dir}/cache levels=1:2 keys_zone=rp4perf:10m max_size=256m inactive=1h use_temp_path=off;`,
        location: 'proxy_buffering on;\n      proxy_cache rp4perf;\n      proxy_cache_lock on;\n      add_header Cache-Status $upstream_cache_status;',
      }
    default:
      return { http: '', location: '' }
  }
}

/** Where Debian puts nginx's dynamic stream module (package libnginx-mod-stream). */
const NGINX_STREAM_MODULES = ['/usr/lib/nginx/modules/ngx_stream_module.so', '/usr/share/nginx/modules/ngx_stream_module.so']

export function nginxStreamModule (): string | null {
  return NGINX_STREAM_MODULES.find(path => existsSync(path)) ?? null
}

export function nginxConfig ({ dir, port, originPort, mode, staticDir }: ConfigInput): string {
  const job = nginxJob(mode, dir)
  // started as root, nginx's workers run as nobody, who may not read the harness's private
  // temporary directories (the files served, the cache): here they keep the harness's user
  const user = (mode === 'static' || mode === 'cache') && process.getuid?.() === 0 ? 'user root;\n' : ''
  const common = `
${user}worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
worker_rlimit_nofile 65536;
events {
  worker_connections 16384;
  multi_accept on;
}
`
  if (mode === 'tcp') {
    const module = nginxStreamModule()
    if (module === null) throw new Error('nginx stream module not installed (apt-get install libnginx-mod-stream)')
    return `load_module ${module};
${common}
stream {
  server {
    listen 127.0.0.1:${port} backlog=4096;
    proxy_pass 127.0.0.1:${originPort};
  }
}
`
  }
  return `${common}
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;

  # the load generator keeps its connections for the whole run; nginx's default of 1000
  # requests per connection would add reconnects that the other proxies do not have
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  # 1 MiB uploads: no size limit, and streamed to the origin instead of spooled to disk
  client_max_body_size 0;
  proxy_request_buffering off;
  # responses streamed with backpressure, as rp4 does, not buffered into temp files
  proxy_buffering off;

  upstream origin {
    server 127.0.0.1:${originPort};
    keepalive 64;
    keepalive_requests 100000000;
  }

  ${job.http}

  server {
    listen 127.0.0.1:${port} backlog=4096;
${mode === 'static'
    ? `    root ${staticDir ?? staticFiles()};
    location / {
      open_file_cache max=256;
    }`
    : `    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      ${job.location}
    }`}
  }
}
`
}

export function haproxyConfig ({ port, originPort, mode }: ConfigInput): string {
  const global = `global
  nbthread 1
  maxconn 8000
  tune.maxrewrite 1024

defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
`
  if (mode === 'tcp') {
    return `${global}
listen passthrough
  mode tcp
  bind 127.0.0.1:${port}
  server origin 127.0.0.1:${originPort}
`
  }
  return `${global}  timeout http-keep-alive 60s
  timeout http-request 10s

frontend front
  mode http
  bind 127.0.0.1:${port}
  option http-keep-alive
  default_backend origin

backend origin
  mode http
  option http-keep-alive
  http-reuse always
  server origin 127.0.0.1:${originPort}
`
}
