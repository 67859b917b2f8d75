/**
 * Paths in two normal forms.
 *
 * `normalizePath`: the same resource, written one way. Percent-encoded unreserved characters are
 * decoded (RFC 3986 2.3: they mean the same thing either way), dot segments removed (5.2.4), runs
 * of slashes merged; reserved characters stay encoded (`%2F` is data, not a separator). What a
 * rewritten path is sent upstream in.
 *
 * `matchingPath`: what a route is matched on, i.e. the widest reading a backend may give the path,
 * so that `/./admin`, `//admin`, `/%61dmin`, `/admin%2Fx` (a backend that decodes %2F before
 * routing sees `/admin/x`, as nginx's own locations do) or `/admin;x` and `/x/..;/admin` (Tomcat and
 * other servlet containers drop `;parameters` from segments) cannot slip past a route written for
 * `/admin`. A route that denies is never narrower than the backend's reading; a route that
 * proxies sees the same request as the backend would. The request itself is forwarded with its
 * target as sent unless a filter rewrites it.
 */

function isUnreserved (code: number): boolean {
  return (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a) || (code >= 0x30 && code <= 0x39) ||
    code === 0x2d || code === 0x2e || code === 0x5f || code === 0x7e
}

function hex (code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30
  if (code >= 0x41 && code <= 0x46) return code - 0x37
  if (code >= 0x61 && code <= 0x66) return code - 0x57
  return -1
}

/** True when `path` needs no work: the common case costs one scan. */
function isPlain (path: string, matching: boolean): boolean {
  let previous = 0
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c === 0x25 /* % */) return false
    if (c === 0x3b /* ; */ && matching) return false
    if (c === 0x2f /* / */ && previous === 0x2f) return false
    if (c === 0x2e /* . */ && previous === 0x2f) return false
    previous = c
  }
  return true
}

export function normalizePath (path: string): string {
  return normalize(path, false)
}

export function matchingPath (path: string): string {
  return normalize(path, true)
}

function normalize (path: string, matching: boolean): string {
  if (path === '*' || isPlain(path, matching)) return path
  let decoded = ''
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c === 0x25 && i + 2 < path.length) {
      const hi = hex(path.charCodeAt(i + 1))
      const lo = hex(path.charCodeAt(i + 2))
      if (hi !== -1 && lo !== -1) {
        const byte = hi * 16 + lo
        if (isUnreserved(byte) || (matching && byte === 0x2f)) {
          decoded += String.fromCharCode(byte)
          i += 2
          continue
        }
        // keep an encoded reserved character, with its hex digits uppercased (RFC 3986 6.2.2.1)
        decoded += '%' + path[i + 1].toUpperCase() + path[i + 2].toUpperCase()
        i += 2
        continue
      }
    }
    decoded += path[i]
  }
  const out: string[] = []
  const segments = decoded.split('/')
  for (let i = 0; i < segments.length; i++) {
    let segment = segments[i]
    if (matching) {
      const parameters = segment.indexOf(';')
      if (parameters !== -1) segment = segment.slice(0, parameters)
    }
    const last = i === segments.length - 1
    if (segment === '.' || segment === '') {
      if (last) out.push('')
      continue
    }
    if (segment === '..') {
      out.pop()
      if (last) out.push('')
      continue
    }
    out.push(segment)
  }
  return '/' + out.join('/')
}

/** True when `path` starts with `prefix` at a segment boundary: `/api` covers `/api` and `/api/x`, not `/apix`; a prefix ending in `/` covers what starts with it. */
export function matchesPrefix (path: string, prefix: string): boolean {
  if (!path.startsWith(prefix)) return false
  if (path.length === prefix.length || prefix.endsWith('/')) return true
  return path.charCodeAt(prefix.length) === 47 /* / */
}
