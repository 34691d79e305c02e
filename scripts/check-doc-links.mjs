#!/usr/bin/env node
// Checks that every relative link in README.md, BENCHMARKS.md and docs/**/*.md resolves: the file
// (or folder) exists and, when the link has an anchor, the target Markdown file has a heading with
// that anchor (GitHub's rule: lowercase, punctuation dropped, spaces to hyphens, -1, -2… on repeats).
// Links in fenced code blocks and inline code are not links. Exits 1 and lists the broken ones.
//
//   node scripts/check-doc-links.mjs [--allow-missing <path>]…
//
// --allow-missing names a repository file that may not exist yet (e.g. a document another branch
// adds); links to it are then reported as skipped, not broken.

import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const allowMissing = new Set();
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--allow-missing' && i + 1 < args.length) allowMissing.add(args[++i]);
  else {
    console.error(`usage: node scripts/check-doc-links.mjs [--allow-missing <path>]…`);
    process.exit(2);
  }
}

function markdownFiles() {
  const files = ['README.md', 'BENCHMARKS.md'].filter((f) => existsSync(join(ROOT, f)));
  const walk = (dir) => {
    if (!existsSync(join(ROOT, dir))) return;
    for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.md')) files.push(path);
    }
  };
  walk('docs');
  return files;
}

/** The lines of a Markdown text that are not inside fenced code blocks, with their numbers. */
function proseLines(text) {
  const out = [];
  let fence = null;
  text.split('\n').forEach((line, i) => {
    const m = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (m) {
      if (fence === null) fence = m[1][0];
      else if (m[1][0] === fence) fence = null;
      return;
    }
    if (fence === null) out.push({ line, number: i + 1 });
  });
  return out;
}

/** Inline code spans removed (their text kept when `keep`), so that `[a](b)` in code is no link. */
function withoutCode(line, keep) {
  return line.replace(/(`+)([\s\S]*?)\1/g, (_, _ticks, code) => (keep ? code : ' '.repeat(code.length)));
}

/** The anchor GitHub gives a heading's text. */
function slug(heading) {
  const text = withoutCode(heading, true)
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // links and images: their text
    .replace(/[*~]/g, '') // emphasis markers
    .replace(/<[^>]+>/g, ''); // inline HTML
  return text
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

const anchorCache = new Map();
function anchorsOf(file) {
  if (!anchorCache.has(file)) {
    const seen = new Map();
    const anchors = new Set();
    for (const { line } of proseLines(readFileSync(file, 'utf8'))) {
      const m = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
      if (!m) continue;
      const base = slug(m[1]);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      anchors.add(n === 0 ? base : `${base}-${n}`);
    }
    // Explicit HTML anchors (<a id="…"> / name="…") count too.
    for (const m of readFileSync(file, 'utf8').matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(m[1]);
    anchorCache.set(file, anchors);
  }
  return anchorCache.get(file);
}

const broken = [];
const skipped = [];
let checked = 0;
for (const file of markdownFiles()) {
  const abs = join(ROOT, file);
  for (const { line, number } of proseLines(readFileSync(abs, 'utf8'))) {
    for (const m of withoutCode(line, false).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      const target = m[1];
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, …
      checked++;
      const where = `${file}:${number}: ${target}`;
      const [pathPart, anchor] = target.split('#', 2);
      const targetAbs = pathPart === '' ? abs : resolve(dirname(abs), decodeURI(pathPart));
      const targetRel = relative(ROOT, targetAbs);
      if (!existsSync(targetAbs)) {
        if (allowMissing.has(targetRel)) skipped.push(`${where} (allowed missing: ${targetRel})`);
        else broken.push(`${where} (no such file: ${targetRel})`);
        continue;
      }
      if (anchor === undefined || anchor === '') continue;
      if (statSync(targetAbs).isDirectory() || !targetAbs.endsWith('.md')) {
        broken.push(`${where} (anchor on a file that is not Markdown)`);
        continue;
      }
      if (!anchorsOf(targetAbs).has(decodeURIComponent(anchor))) {
        broken.push(`${where} (no heading #${anchor} in ${targetRel})`);
      }
    }
  }
}

for (const s of skipped) console.log(`skipped ${s}`);
for (const b of broken) console.log(`BROKEN  ${b}`);
console.log(`${checked} relative links checked, ${broken.length} broken, ${skipped.length} skipped`);
process.exit(broken.length ? 1 : 0);
