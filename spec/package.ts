/**
 * What `npm pack` ships (from the build: `npm test` builds first): the license, the files the
 * shipped READMEs link to, the TypeScript sources every source map points at, and nothing of the
 * specs or the benchmark harness but the README the main one links to.
 */
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { ROOT, checkBuilt } from './helpers/proxy.js'

const run = promisify(execFile)

async function packedFiles (): Promise<string[]> {
  // --ignore-scripts: the build is the one `npm test` made, not another one here
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, timeout: 60_000 })
  const [pack] = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>
  return pack.files.map(file => file.path)
}

/** Relative links of a Markdown file (`[text](target)`), anchors and URLs left out, as package paths. */
function relativeLinks (file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), 'utf8')
  const links: string[] = []
  for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = match[1].split('#')[0]
    if (target === '' || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue
    links.push(path.posix.normalize(path.posix.join(path.posix.dirname(file), target)))
  }
  return links
}

t.test('npm pack: license, linked documents, the sources of every source map, no specs', async t => {
  if (!checkBuilt(t, 'dist/lib/index.js')) return
  const files = await packedFiles()
  const shipped = new Set(files)
  for (const required of ['LICENSE', 'README.md', 'package.json', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/bin/rp4.js']) {
    t.ok(shipped.has(required), `${required} is shipped`)
  }
  const license = path.join(ROOT, 'LICENSE')
  t.match(existsSync(license) ? readFileSync(license, 'utf8') : '', /^MIT License\n\nCopyright \(c\) \d{4} rp4 contributors\n/, 'the MIT license')

  const missingLinks = files.filter(f => f.endsWith('.md')).flatMap(doc => relativeLinks(doc).filter(link => !shipped.has(link)).map(link => `${doc} → ${link}`))
  t.same(missingLinks, [], 'every relative link of a shipped document leads to a shipped file')

  const maps = files.filter(f => f.endsWith('.map'))
  t.ok(maps.length > 0, 'source maps are shipped')
  const missingSources: string[] = []
  for (const map of maps) {
    const { sources, sourcesContent } = JSON.parse(readFileSync(path.join(ROOT, map), 'utf8')) as { sources: string[], sourcesContent?: Array<string | null> }
    for (const [i, source] of sources.entries()) {
      // the bundles' maps carry their sources (TypeBox's among them): nothing to ship for those
      if (typeof sourcesContent?.[i] === 'string') continue
      const file = path.posix.normalize(path.posix.join(path.posix.dirname(map), source))
      if (!shipped.has(file)) missingSources.push(`${map} → ${file}`)
    }
  }
  t.same(missingSources, [], 'every source a map names is shipped, or carried in the map')

  t.same(files.filter(f => f.startsWith('spec/') || f.startsWith('dist/spec/')), [], 'no specs')
  const linked = new Set(relativeLinks('README.md'))
  t.same(files.filter(f => (f.startsWith('perf/') || f.startsWith('dist/perf/')) && !linked.has(f)), [], 'nothing of the benchmark harness but what the README links')
})
