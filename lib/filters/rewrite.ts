/**
 * The configuration's own filters: the path rewritten (a prefix stripped, or a pattern replaced)
 * and headers set, added or removed on the request to the backend or on the response to the client.
 */
import type { HeaderList } from '../http/headers.js'
import { matchesPrefix, matchingPath, normalizePath } from '../http/path.js'
import type { Filter, Verdict } from '../session/filter.js'

/**
 * `/api/users?x` with prefix `/api` goes upstream as `/users?x` (`/api` alone as `/`). The prefix
 * is matched as routes match it, and the rest is sent normalized with its `%2F` kept encoded
 * (an API may carry `a%2Fb` as one segment); only where the prefix itself matched through a
 * decoded `%2F` or a dropped `;parameter` is the rest taken from the matching form.
 */
export function stripPrefixFilter (prefix: string): Filter {
  const bare = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix
  return {
    name: 'stripPrefix',
    onRequest (session): Verdict {
      const request = session.request
      let path = normalizePath(request.path)
      if (!matchesPrefix(path, prefix)) {
        path = matchingPath(request.path)
        if (!matchesPrefix(path, prefix)) return 'continue'
      }
      const rest = path.slice(bare.length)
      request.path = rest === '' ? '/' : rest
      return 'continue'
    },
  }
}

/**
 * The path replaced by `replacement` (with `$1`… for the pattern's groups) where `pattern` matches;
 * the query stays. The pattern sees the normalized path (as stripPrefix does), so that `//api/x`
 * or `/./api/x`, which the route took for `/api/x`, are rewritten as `/api/x` would be rather
 * than slipping past the pattern unchanged.
 */
export function rewritePathFilter (pattern: RegExp, replacement: string): Filter {
  return {
    name: 'rewritePath',
    onRequest (session): Verdict {
      const request = session.request
      const path = normalizePath(request.path)
      if (pattern.test(path)) {
        pattern.lastIndex = 0
        const rewritten = path.replace(pattern, replacement)
        request.path = rewritten.startsWith('/') ? rewritten : '/' + rewritten
      }
      return 'continue'
    },
  }
}

export interface HeaderEdits {
  set: ReadonlyArray<readonly [string, string]>
  add: ReadonlyArray<readonly [string, string]>
  remove: readonly string[]
}

function edit (headers: HeaderList, edits: HeaderEdits): void {
  for (const name of edits.remove) headers.delete(name)
  for (const [name, value] of edits.set) headers.set(name, value)
  for (const [name, value] of edits.add) headers.append(name, value)
}

/** Request headers edited last, after rp4's forwarding headers: a route may set X-Forwarded-Proto itself. */
export function requestHeadersFilter (edits: HeaderEdits): Filter {
  return { name: 'requestHeaders', onUpstreamRequest (_session, head): void { edit(head.headers, edits) } }
}

export function responseHeadersFilter (edits: HeaderEdits): Filter {
  return { name: 'responseHeaders', onResponse (_session, head): void { edit(head.headers, edits) } }
}
