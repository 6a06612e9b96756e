"""Three real few-shot data sets built offline from Debian packages, for bench/ comparisons.

Every builder writes class-per-folder trees under `cache_dir` (kept, keyed by its settings
and by the versions of the packages it read, so a second call returns at once) and returns
`{"source_train", "source_val", "target_train", "target_test": path}`. Source classes are
disjoint from target classes (pretrain on source, fine-tune on `shots` target examples per
class, score on target_test). No file content appears twice across a set's splits (SHA-1).
`manifest.json` in each set records its classes, counts and which packages, themes or
voices went to which split. Package versions below are those of Debian 12 ("bookworm").

icons (`build_icons`, 64x64 RGB PNG): freedesktop icons of the Debian icon-theme packages
`ICON_PACKAGES` (adwaita-icon-theme 43-1, breeze-icon-theme 5.103.0-1, oxygen-icon-theme
5.103.0-1, papirus-icon-theme 20230104-2, elementary-icon-theme 7.2.0-1, elementary-xfce-
icon-theme 0.17-1, faenza-icon-theme 1.3.1-3, obsidian-icon-theme 3.5-1.1, gnome-icon-theme
3.12.0-5, mate-icon-theme 1.26.0-1, tango-icon-theme 0.8.90-11, gnome-colors-common/-brave/
-wise 5.5.1-2.1, numix-icon-theme 0~20230220-1, numix-icon-theme-circle 22.11.05-1, moka-
icon-theme 5.5.0-2, faba-icon-theme 4.3-1, paper-icon-theme 1.5.0+git20200312-4,
deepin-icon-theme 2021.11.24-1, suru-icon-theme 20.05.1-3, lxde-icon-theme 0.5.1-2.1,
gnome-icon-theme-gartoon 0.5-5, -nuovo 0.5-4.2, -yasis 0.4.2-1.2, -suede 0.2.5-3), rendered
by rsvg-convert (librsvg2-bin 2.54.7) onto white. A class is an icon concept (a
freedesktop name and older aliases, `SOURCE_ICONS`: 30 concepts, `TARGET_ICONS`: 10); its
examples are the themes' drawings of it, up to four sizes each (22 px to scalable, never
symbolic or dark variants). Themes are grouped into 17 style families (a package, or
packages derived from one another: `_FAMILY`). Target classes are split BY FAMILY:
target_train draws its `shots` per class round-robin over families taken in a seeded
order until every target concept has `shots` drawings there (and at least `train_families`
are taken); target_test holds every drawing of the other families, so the test asks whether a concept is recognised in a
style never seen for it. source_val holds a fifth of each source concept's families.
Drawings that two concepts share (symlinks) are dropped.

manpages (`build_manpages`, .txt): the English manual pages in /usr/share/man/man[1-8]
(not links or `.so` aliases) of installed packages that Debian's archive carries (which
leaves out e.g. a vendor's google-cloud-cli): manpages 6.03-2 and manpages-dev 6.03-2
(about 1,100 pages, most of sections 2-4 and 7), and whatever else is installed (systemd,
coreutils, iproute2, openssl, ...). Each page is formatted by groff (groff-base 1.22.4,
as man-db 2.11 would) and kept as NAME and DESCRIPTION, without the header and footer
lines that name the section, cut to `max_chars`. Target classes are the sections with
enough pages (1 user commands, 2 system calls, 3 library functions, 4 devices, 5 file
formats, 7 overviews, 8 administration; 6 has one page). Pages are grouped by family (the
name up to its first `-_.:`: git-commit and git-push, or printf.1 and printf.3, are one
family), and a family lies in one split only: target_train takes `shots` pages of as many
packages as it can, one per family; target_test at most `max_test` pages per section, at
most 5 of a family, spread over packages. The source task is "which package is this page
from", over the largest packages (>= 40 pages) that can give all their pages to it while
every section keeps 75% of its own (git-man, libxt-dev, util-linux, llvm-14, ... here).

words (`build_words`, 16 kHz mono 16-bit WAV of 1.0 s): English words spoken by espeak-ng
1.51+dfsg-10 (formant voices: accents and variants) and by MBROLA voices (mbrola
3.3+dfsg-9 with diphone databases cut from recordings of real speakers: mbrola-us1/us2/
us3/en1 and the English-speaking German, French, Dutch, Swedish, Hungarian, Polish,
Afrikaans and Romanian voices; they are in Debian's contrib and non-free components, so
`ensure_debian_packages` installs them through a private apt source list in the cache,
leaving the machine's alone). 25 source words, 10 target words (`SOURCE_WORDS`,
`TARGET_WORDS`); source, target_train and target_test voices are three disjoint sets
(`VOICES`), so the test asks about unseen speakers, mostly recorded ones. Speed and pitch
are drawn per clip; each clip is trimmed to the speech (-40 dB of its loudest 10 ms), set
to -24..-16 dBFS RMS, placed at a random offset and padded over -60 dBFS white noise.
Where MBROLA cannot be installed, formant voices stand in (`_FORMANT_ONLY`).

    python bench/real_data.py --out DIR [--which icons,manpages,words] [--seed 0]
"""

import argparse
import base64
import collections
import concurrent.futures
import gzip
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
import zlib

import numpy as np

CACHE_DIR = "~/.cache/tfft-bench"
VERSION = 2
SPLITS = ("source_train", "source_val", "target_train", "target_test")
_ENV = dict(os.environ, LC_ALL="C.UTF-8", DEBIAN_FRONTEND="noninteractive")


def _run(command, **kwargs):
    return subprocess.run(command, capture_output=True, check=False, env=_ENV, **kwargs)


def _versions(names):
    """{package: version} of the installed packages among `names`."""
    out = _run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Status}\n",
                *names], text=True).stdout
    rows = (line.split("\t") for line in out.splitlines())
    return {r[0].split(":")[0]: r[1] for r in rows if len(r) == 3 and r[2] == "installed"}


def _private_apt(components):
    """apt-get options for the machine's Debian sources plus `components`, in a cache."""
    root = os.path.join(os.path.expanduser(CACHE_DIR), "apt")
    targets = _run(["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE)"],
                   text=True).stdout.split("\n")
    repos = sorted({line for line in targets if line.strip()})
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    entries = [f"Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: main "
               f"{' '.join(components)}\n" + (f"Signed-By: {keyring}\n" if os.path.exists(
                   keyring) else "") for uri, suite in (line.split() for line in repos)]
    os.makedirs(os.path.join(root, "lists", "partial"), exist_ok=True)
    os.makedirs(os.path.join(root, "archives", "partial"), exist_ok=True)
    with open(os.path.join(root, "extra.sources"), "w") as f:
        f.write("\n".join(entries))
    return ["-o", f"Dir::Etc::SourceList={root}/extra.sources", "-o",
            "Dir::Etc::SourceParts=/nonexistent", "-o", f"Dir::State::Lists={root}/lists",
            "-o", f"Dir::Cache={root}", "-o", f"Dir::Cache::Archives={root}/archives"]


def ensure_debian_packages(names, components=()):
    """Install the missing Debian packages among `names` with apt-get (as root only).

    `components` (e.g. `("contrib", "non-free")`) adds those archive components through a
    private source list under the cache, leaving the machine's apt configuration alone.
    Returns the packages it installed; raises RuntimeError naming the command otherwise.
    """
    missing = [n for n in names if n not in _versions(names)]
    if not missing:
        return []
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    hint = f"{' '.join(command)}" + (f" (from Debian's {'/'.join(components)} components)"
                                     if components else "")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"Debian packages {missing} are missing; as root run: {hint}")
    options = _private_apt(components) if components else []
    result = _run(command[:1] + options + command[1:])
    if result.returncode != 0:  # stale or missing package lists: refresh once, retry
        _run(["apt-get", *options, "update", "-qq"])
        result = _run(command[:1] + options + command[1:])
    if result.returncode != 0:
        raise RuntimeError(f"`{hint}` failed: {result.stderr.decode()[-600:]}")
    return missing


def _rng(seed, *keys):
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in keys)])


def _cached(name, settings, cache_dir, write):
    """Build a set once: `write(staging) -> provenance`, kept under a settings key."""
    key = hashlib.sha1(json.dumps([VERSION, settings], sort_keys=True).encode()).hexdigest()
    root = os.path.join(os.path.expanduser(cache_dir), f"{name}-{key[:12]}")
    if not os.path.exists(os.path.join(root, "manifest.json")):
        os.makedirs(os.path.dirname(root), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{name}-", dir=os.path.dirname(root))
        start = time.time()
        provenance = write(staging)
        manifest = dict(settings=settings, provenance=provenance, seconds=round(
            time.time() - start, 1), stats=split_stats(staging))
        with open(os.path.join(staging, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        shutil.rmtree(root, ignore_errors=True)
        os.rename(staging, root)
    return {split: os.path.join(root, split) for split in SPLITS}


def split_stats(root):
    """{split: {classes, min, median, max, total}} of a built set's folders."""
    stats = {}
    for split in SPLITS:
        folder = os.path.join(root, split)
        counts = [len(os.listdir(os.path.join(folder, c))) for c in sorted(os.listdir(
            folder))] if os.path.isdir(folder) else []
        stats[split] = dict(classes=len(counts), total=sum(counts), min=min(counts, default=0),
                            median=statistics.median(counts) if counts else 0,
                            max=max(counts, default=0))
    return stats


class _Dedupe:
    """Writes files into class folders, skipping content already written anywhere."""

    def __init__(self, root):
        self.root, self.seen = root, set()

    def write(self, split, label, name, data):
        digest = hashlib.sha1(data).hexdigest()
        if digest in self.seen:
            return False
        self.seen.add(digest)
        folder = os.path.join(self.root, split, label)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
        return True


# ----------------------------------------------------------------------------- icons
ICON_PACKAGES = (
    "adwaita-icon-theme", "breeze-icon-theme", "oxygen-icon-theme", "papirus-icon-theme",
    "elementary-icon-theme", "elementary-xfce-icon-theme", "faenza-icon-theme",
    "obsidian-icon-theme", "gnome-icon-theme", "mate-icon-theme", "tango-icon-theme",
    "gnome-brave-icon-theme", "gnome-wise-icon-theme", "numix-icon-theme",
    "numix-icon-theme-circle", "moka-icon-theme", "faba-icon-theme", "paper-icon-theme",
    "deepin-icon-theme", "suru-icon-theme", "lxde-icon-theme", "gnome-icon-theme-gartoon",
    "gnome-icon-theme-nuovo", "gnome-icon-theme-yasis", "gnome-icon-theme-suede",
    "librsvg2-bin",
)
# Packages whose drawings derive from one another count as one style family.
_FAMILY = {"obsidian": "faenza", "numix-circle": "numix", "elementary-xfce": "elementary",
           "faba": "moka", "mate": "tango", "gnome": "tango", "gnome-colors-common": "tango",
           "gnome-brave": "tango", "gnome-wise": "tango"}


def _concepts(table):
    """{concept: names}: one concept a line, its freedesktop name first, then aliases."""
    return {line.split()[0]: tuple(line.split()) for line in table.strip().splitlines()}


# Older GNOME 2 and GTK stock names are aliases, so the older themes count too.
TARGET_ICONS = _concepts("""
user-trash user-trash-full gnome-fs-trash-empty gnome-fs-trash-full trashcan_empty trashcan_full
printer gnome-dev-printer
drive-harddisk gnome-dev-harddisk
input-keyboard gnome-dev-keyboard
audio-volume-high audio-volume-medium stock_volume-max
camera-photo camera
dialog-warning gtk-dialog-warning stock_dialog-warning
system-search gnome-searchtool
accessories-calculator gnome-calculator calc
utilities-terminal gnome-terminal terminal
""")
SOURCE_ICONS = _concepts("""
folder gnome-fs-directory
user-home gnome-fs-home
computer gnome-fs-client
network-server gnome-fs-server
media-optical gnome-dev-cdrom media-cdrom
input-mouse gnome-dev-mouse-optical gnome-dev-mouse-ball
video-display
drive-removable-media gnome-dev-removable
media-floppy gnome-dev-floppy
edit-copy gtk-copy stock_copy
edit-paste gtk-paste stock_paste
edit-cut gtk-cut stock_cut
edit-delete gtk-delete stock_delete
document-save gtk-save stock_save
document-open gtk-open stock_open
document-new gtk-new
go-next gtk-go-forward-ltr stock_right
go-home gtk-home stock_home
list-add gtk-add
list-remove gtk-remove
view-refresh gtk-refresh stock_refresh
media-playback-start gtk-media-play-ltr stock_media-play
media-playback-pause gtk-media-pause stock_media-pause
dialog-information gtk-dialog-info
dialog-error gtk-dialog-error
system-shutdown gnome-shutdown
image-x-generic gnome-mime-image
package-x-generic gnome-package
web-browser internet-web-browser
help-browser help-contents gnome-help
""")
_SIZE = re.compile(r"^(\d+)(?:x\d+)?(?:@(\d)x)?$")


def _theme_files(theme_dir, names):
    """{alias: [(size, realpath)]} of a theme's PNG/SVG drawings >= 22 px, not symbolic."""
    found = collections.defaultdict(dict)
    for folder, dirs, files in os.walk(theme_dir):
        dirs.sort()
        parts = os.path.relpath(folder, theme_dir).split(os.sep)
        if any("symbolic" in p for p in parts):
            continue
        sizes = [int(m[1]) * int(m[2] or 1) for m in map(_SIZE.match, parts) if m]
        size = sizes[0] if sizes else 512  # "scalable" and unsized folders: vector art
        for file in sorted(files):
            stem, ext = os.path.splitext(file)
            if stem in names and ext in (".png", ".svg", ".svgz") and size >= 22:
                path = os.path.realpath(os.path.join(folder, file))
                if os.path.isfile(path):
                    found[stem].setdefault(path, size)
    return {alias: sorted((s, p) for p, s in paths.items()) for alias, paths in found.items()}


def _render(path, size):
    """A drawing as `size`x`size` RGB pixels on white (aspect kept), via rsvg-convert."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".svgz"):
        data = gzip.decompress(data)
    mime = "image/png" if path.endswith(".png") else "image/svg+xml"
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}">'
           f'<image width="{size}" height="{size}" href="data:{mime};base64,'
           f'{base64.b64encode(data).decode()}"/></svg>')
    result = _run(["rsvg-convert", "-b", "white", "-w", str(size), "-h", str(size)],
                  input=svg.encode(), timeout=60)
    return result.stdout if result.returncode == 0 and result.stdout else None


def build_icons(shots=10, seed=0, cache_dir=CACHE_DIR, size=64, train_families=4):
    """Icon concepts drawn by Debian icon themes; target split by style family."""
    ensure_debian_packages(ICON_PACKAGES)
    settings = dict(shots=shots, seed=seed, size=size, train_families=train_families,
                    source=SOURCE_ICONS, target=TARGET_ICONS,
                    packages=_versions(ICON_PACKAGES))

    def write(root):
        import tensorflow as tf  # only to decode and encode PNG

        owner = {}
        for package in ICON_PACKAGES[:-1]:
            listing = _run(["dpkg", "-L", package], text=True).stdout.splitlines()
            for path in listing:
                m = re.match(r"^/usr/share/icons/([^/]+)/index\.theme$", path)
                if m and "dark" not in m[1].lower():  # dark variants: light art on white
                    owner[m[1]] = package.replace("-icon-theme", "").replace("gnome-icon-"
                                                                             "theme-", "")
        concepts = {**SOURCE_ICONS, **TARGET_ICONS}
        alias_of = {a: c for c, aliases in concepts.items() for a in aliases}
        jobs = []  # (concept, family, theme, alias, size, path)
        for theme in sorted(owner):
            family = _FAMILY.get(owner[theme], owner[theme])
            for alias, files in _theme_files(f"/usr/share/icons/{theme}", alias_of).items():
                # Up to 4 sizes, spread from the smallest to the largest drawing.
                picks = np.unique(np.linspace(0, len(files) - 1, 4).round().astype(int))
                for s, path in (files[i] for i in picks):
                    jobs.append((alias_of[alias], family, theme, alias, s, path))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            pngs = list(pool.map(lambda job: _render(job[-1], size), jobs))
        images, concepts_of = [], collections.defaultdict(set)
        for job, png in zip(jobs, pngs):
            if png is None:
                continue
            rgba = tf.io.decode_png(png, channels=4).numpy().astype(np.float32)
            alpha = rgba[..., 3:] / 255.0
            rgb = np.round(rgba[..., :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
            if rgb.min() > 245:  # blank drawing
                continue
            data = tf.io.encode_png(rgb).numpy()
            concepts_of[hashlib.sha1(data).hexdigest()].add(job[0])
            images.append((job, data))
        by, seen = collections.defaultdict(list), set()
        for job, data in images:  # one copy of a drawing, and none that two concepts share
            digest = hashlib.sha1(data).hexdigest()
            if len(concepts_of[digest]) == 1 and digest not in seen:
                seen.add(digest)
                by[job[0]].append((job, data))
        families = sorted({job[1] for job, _ in images})
        order = [families[i] for i in _rng(seed, "families").permutation(len(families))]
        # target_train families: in a seeded order, until each target class has `shots`
        # drawings in them and at least `train_families` are taken; the rest: target_test.
        chosen = []
        for family in order:
            enough = all(sum(j[1] in chosen for j, _ in by[c]) >= shots for c in TARGET_ICONS)
            if enough and len(chosen) >= train_families:
                break
            chosen.append(family)
        out = _Dedupe(root)
        name = lambda j: f"{j[2]}_{j[3]}_{j[4]}px.png"  # noqa: E731
        for concept in SOURCE_ICONS:  # source_val: a fifth of the families, per concept
            fams = sorted({j[1] for j, _ in by[concept]})
            val = set(_rng(seed, "val", concept).permutation(fams)[: max(1, len(fams) // 5)])
            for job, data in by[concept]:
                out.write("source_val" if job[1] in val else "source_train", concept,
                          name(job), data)
        for concept in TARGET_ICONS:
            pool = [x for x in by[concept] if x[0][1] in chosen]
            pool = [pool[i] for i in _rng(seed, "shots", concept).permutation(len(pool))]
            # Round-robin over families, so the few shots show several styles.
            picked, seen_fam = [], collections.Counter()
            while len(picked) < shots and pool:
                job, data = min(pool, key=lambda x: seen_fam[x[0][1]])
                pool.remove((job, data))
                if out.write("target_train", concept, name(job), data):
                    picked.append(job)
                    seen_fam[job[1]] += 1
            for job, data in by[concept]:
                if job[1] not in chosen:
                    out.write("target_test", concept, name(job), data)
        themes = lambda fams: sorted({t for t, p in owner.items() if _FAMILY.get(  # noqa
            p, p) in fams})
        return dict(train_families=chosen, test_families=[f for f in families
                                                          if f not in chosen],
                    train_themes=themes(chosen), test_themes=themes(set(families) - set(
                        chosen)), source_themes=sorted(owner))

    return _cached("icons", settings, cache_dir, write)



# ----------------------------------------------------------------------------- manpages
MAN_PACKAGES = ("manpages", "manpages-dev", "man-db", "groff-base")
SECTIONS = {"1": "1-user-commands", "2": "2-system-calls", "3": "3-library-functions",
            "4": "4-devices", "5": "5-file-formats", "6": "6-games", "7": "7-overviews",
            "8": "8-administration"}
_HEADING = re.compile(r"^[A-Z][A-Z0-9 ,/()-]*$")


def _man_pages():
    """[(section, base name, package, path)] of Debian-provided English manual pages."""
    owner = {}
    info = "/var/lib/dpkg/info"
    for file in sorted(os.listdir(info)):
        if file.endswith(".list"):
            with open(os.path.join(info, file), errors="replace") as f:
                for line in f:
                    if line.startswith("/usr/share/man/man") and line.endswith(".gz\n"):
                        owner[line.strip()] = file[:-5].split(":")[0]
    # Only packages Debian's archive carries (not e.g. a vendor's own repository).
    madison = _run(["apt-cache", "madison", *sorted(set(owner.values()))], text=True).stdout
    debian = {line.split("|")[0].strip() for line in madison.splitlines()} or set(
        owner.values())  # no apt lists to ask: keep every package
    pages = []
    for path, package in sorted(owner.items()):
        m = re.match(r"^/usr/share/man/man(\d)/(.+)\.\d[^.]*\.gz$", path)
        if m and package in debian and os.path.isfile(path) and not os.path.islink(path):
            pages.append((m[1], m[2], package, path))
    return pages


def _man_text(path, max_chars):
    """NAME and DESCRIPTION of a page as plain text, or None (a `.so` alias, no text)."""
    with gzip.open(path, "rb") as f:
        roff = f.read()
    lines = [x for x in roff.decode("utf-8", "replace").splitlines()
             if x.strip() and not x.startswith(('.\\"', "'\\\""))]
    if not lines or lines[0].startswith(".so "):
        return None
    result = _run(["groff", "-k", "-t", "-man", "-Tutf8", "-P-cbou", "-rLL=100n", "-rHY=0"],
                  input=roff, timeout=60)
    sections, name = {}, None
    for line in result.stdout.decode("utf-8", "replace").splitlines()[1:]:  # no header
        if _HEADING.match(line):
            name = line.strip()
            sections.setdefault(name, [])
        elif name:
            sections[name].append(line.strip())
    keep = [k for k in sections if k in ("NAME", "DESCRIPTION")] or list(sections)[:2]
    if "DESCRIPTION" not in keep:  # no DESCRIPTION: the first section after SYNOPSIS
        keep += [k for k in sections if k not in ("NAME", "SYNOPSIS")][:1]
    parts = []
    for k in keep:
        body = re.sub(r"[ \t]+", " ", "\n".join(sections[k][:-1] if k == list(sections)[
            -1] else sections[k])).strip()  # the last line of the last section is the footer
        parts.append(f"{k}\n{re.sub(chr(10) + '{3,}', chr(10) * 2, body)}")
    text = "\n\n".join(parts)
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0]
    return text if len(text) >= 200 else None


def build_manpages(shots=10, seed=0, cache_dir=CACHE_DIR, max_chars=1500, max_test=200,
                   min_pages=20, source_packages=8, source_pages=120):
    """Manual pages classified by section; families never straddle splits."""
    ensure_debian_packages(MAN_PACKAGES)
    pages = _man_pages()
    settings = dict(shots=shots, seed=seed, max_chars=max_chars, max_test=max_test,
                    min_pages=min_pages, source_packages=source_packages,
                    source_pages=source_pages, packages=_versions(sorted({
                        p[2] for p in pages})), pages=hashlib.sha1(json.dumps(
                            pages).encode()).hexdigest())

    def family(page):
        return re.split(r"[-_.:]", page[1].lower())[0] or page[1]

    def write(root):
        per_section = collections.Counter(p[0] for p in pages)
        sections = [s for s in SECTIONS if per_section[s] >= min_pages + shots]
        # Source task, "which package is this page from": the largest packages whose
        # pages all go to the source split, as long as every section keeps 75% of its.
        left, source = collections.Counter(per_section), []
        for package, n in collections.Counter(p[2] for p in pages).most_common():
            mine = collections.Counter(p[0] for p in pages if p[2] == package)
            if n >= 40 and len(source) < source_packages and all(
                    left[s] - mine[s] >= 0.75 * per_section[s] for s in sections):
                source.append(package)
                left -= mine
        source_fams = {family(p) for p in pages if p[2] in source}
        wanted = [p for p in pages if p[2] in source or p[0] in sections]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            texts = dict(zip(wanted, pool.map(lambda p: _man_text(p[3], max_chars), wanted)))
        text = texts.get
        out = _Dedupe(root)

        used = collections.defaultdict(list)
        for package in sorted(source):
            mine = [p for p in pages if p[2] == package]
            mine = [mine[i] for i in _rng(seed, "source", package).permutation(len(mine))]
            for i, page in enumerate(mine[:source_pages]):  # a random fifth for source_val
                split = "source_val" if i % 5 == 4 else "source_train"
                if text(page) and out.write(split, package, f"{page[1]}.{page[0]}.txt",
                                            text(page).encode()):
                    used[split].append(page[2])
        target = [p for p in pages if p[0] in sections and family(p) not in source_fams]
        train_fams = set()
        for s in sections:
            mine = [p for p in target if p[0] == s]
            mine = [mine[i] for i in _rng(seed, "shots", s).permutation(len(mine))]
            # `shots` pages of different families, preferring packages not picked yet.
            picked, seen_pkg = 0, collections.Counter()
            while picked < shots and mine:
                page = min(mine, key=lambda p: seen_pkg[p[2]])
                mine = [p for p in mine if family(p) != family(page)]
                if text(page) and out.write("target_train", SECTIONS[s],
                                            f"{page[1]}.{s}.txt", text(page).encode()):
                    picked, seen_pkg[page[2]] = picked + 1, seen_pkg[page[2]] + 1
                    train_fams.add(family(page))
                    used["target_train"].append(page[2])
        for s in sections:
            mine = [p for p in target if p[0] == s and family(p) not in train_fams]
            mine = [mine[i] for i in _rng(seed, "test", s).permutation(len(mine))]
            # At most 5 pages of a family, and spread over packages: round-robin.
            per_fam, per_pkg, written = collections.Counter(), collections.Counter(), 0
            while written < max_test and mine:
                page = min(mine, key=lambda p: per_pkg[p[2]])
                mine.remove(page)
                if per_fam[family(page)] >= 5:
                    continue
                if text(page) and out.write("target_test", SECTIONS[s],
                                            f"{page[1]}.{s}.txt", text(page).encode()):
                    written += 1
                    per_fam[family(page)] += 1
                    per_pkg[page[2]] += 1
                    used["target_test"].append(page[2])
        return dict(sections=[SECTIONS[s] for s in sections], source_packages=sorted(source),
                    packages={k: dict(collections.Counter(v)) for k, v in used.items()})

    return _cached("manpages", settings, cache_dir, write)



# ----------------------------------------------------------------------------- words
SOURCE_WORDS = ("apple", "banana", "orange", "tiger", "window", "garden", "rocket",
                "pencil", "purple", "music", "doctor", "winter", "river", "silver",
                "carpet", "monkey", "yellow", "finger", "basket", "coffee", "dragon",
                "jungle", "lemon", "magic", "pillow")
TARGET_WORDS = ("kitchen", "bottle", "candle", "forest", "guitar", "island", "mountain",
                "planet", "rabbit", "thunder")
# Three disjoint sets of speakers: mb-* are MBROLA diphone voices (recorded people),
# the others espeak-ng formant voices (language[+variant]).
VOICES = dict(
    source=("mb-us2", "mb-de4-en", "mb-fr1-en", "mb-sw1-en", "mb-pl1-en", "mb-ro1-en",
            "en-us", "en-gb", "en-gb-x-rp", "en+m3", "en+f2", "en-us+m7"),
    train=("mb-us1", "mb-de1-en", "mb-nl2-en", "en-gb-scotland", "en-us+f4"),
    test=("mb-us3", "mb-en1", "mb-de2-en", "mb-de5-en", "mb-de6-en", "mb-fr4-en",
          "mb-sw2-en", "mb-hu1-en", "mb-af1-en", "en-029", "en-gb-x-gbcwmd+m5",
          "en-us-nyc+f3"),
)
_FORMANT_ONLY = dict(  # used for a role when no MBROLA voice of it can be had
    source=("en+m1", "en+m2", "en+m4", "en+f1", "en+f3"), train=("en-gb-x-gbclan+m6",),
    test=("en-gb-x-rp+f5", "en-029+m2", "en-us+klatt", "en-gb-scotland+f1"))
MBROLA_PACKAGES = ("mbrola",) + tuple(sorted({
    f"mbrola-{v[3:6]}" for role in VOICES.values() for v in role if v.startswith("mb-")}))
RATE = 16000


def _speak(word, voice, speed, pitch):
    """One utterance as float samples at RATE (espeak-ng writes 22.05 or 16 kHz)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        result = _run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w",
                       f.name, word], timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"espeak-ng -v {voice} failed: {result.stderr.decode()}")
        with wave.open(f.name) as w:
            rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0
    if rate != RATE:  # band-limited resampling in the frequency domain
        n = int(round(len(x) * RATE / rate))
        spectrum = np.fft.rfft(x)[: n // 2 + 1]
        x = np.fft.irfft(spectrum, n) * n / len(x)
    return x


def _clip(job):
    """A 1 s clip: trimmed to the speech (-40 dB of the loudest 10 ms), set to a random
    level around -20 dBFS RMS, at a random offset, over -60 dBFS white noise."""
    word, voice, seed_key, seed = job
    rng = _rng(seed, *seed_key)
    speed, pitch = int(rng.integers(130, 200)), int(rng.integers(25, 76))
    for attempt in range(3):
        x = _speak(word, voice, int(speed * 1.3 ** attempt), pitch)
        frames = np.sqrt(np.mean(x[: len(x) // 160 * 160].reshape(-1, 160) ** 2, axis=1))
        if not frames.size or frames.max() == 0:
            raise RuntimeError(f"espeak-ng -v {voice} said nothing for {word!r}")
        loud = np.flatnonzero(frames > frames.max() * 0.01)
        x = x[max(loud[0] - 2, 0) * 160: (loud[-1] + 3) * 160]
        if len(x) <= RATE:
            break
    x = x[(len(x) - RATE) // 2:][:RATE] if len(x) > RATE else x  # still too long: centre
    x *= 10 ** (rng.uniform(-24, -16) / 20) / np.sqrt(np.mean(x ** 2))
    x /= max(1.0, np.abs(x).max() / 0.98)
    clip = rng.standard_normal(RATE) * 10 ** (-60 / 20)
    offset = int(rng.integers(0, RATE - len(x) + 1))
    clip[offset: offset + len(x)] += x
    pcm = np.clip(np.round(clip * 32768), -32768, 32767).astype("<i2")
    with tempfile.SpooledTemporaryFile() as f:
        with wave.open(f, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(pcm.tobytes())
        f.seek(0)
        return f"{voice.replace('+', '_')}_s{speed}_p{pitch}", f.read()


def build_words(shots=5, seed=0, cache_dir=CACHE_DIR, source_clips=4, test_clips=3):
    """Spoken words; source, target_train and target_test voices are disjoint."""
    ensure_debian_packages(["espeak-ng"])
    try:
        ensure_debian_packages(MBROLA_PACKAGES, components=("contrib", "non-free"))
        note = None
    except RuntimeError as error:
        note = f"MBROLA voices unavailable, formant voices only: {error}"
        print(note)
    voices = {}
    for role, names in VOICES.items():
        ok = [v for v in names if not v.startswith("mb-") or os.path.exists(
            f"/usr/share/mbrola/{v[3:6]}/{v[3:6]}")]
        voices[role] = ok + [v for v in _FORMANT_ONLY[role] if len(ok) < len(names)]
    settings = dict(shots=shots, seed=seed, source_clips=source_clips, test_clips=test_clips,
                    voices=voices, source=SOURCE_WORDS, target=TARGET_WORDS,
                    packages=_versions(["espeak-ng", "espeak-ng-data", *MBROLA_PACKAGES]))

    def write(root):
        jobs = []  # (split, word, (word, voice, key, seed))
        for word in SOURCE_WORDS:
            for voice in voices["source"]:
                for i in range(source_clips + 1):
                    split = "source_val" if i == source_clips else "source_train"
                    jobs.append((split, word, (word, voice, (split, word, voice, i), seed)))
        for word in TARGET_WORDS:
            order = _rng(seed, "shots", word).permutation(len(voices["train"]))
            for i in range(shots):
                voice = voices["train"][order[i % len(order)]]
                jobs.append(("target_train", word, (word, voice, ("tt", word, i), seed)))
            for voice in voices["test"]:
                for i in range(test_clips):
                    jobs.append(("target_test", word, (word, voice, ("te", word, voice, i),
                                                       seed)))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            clips = list(pool.map(_clip, [job[2] for job in jobs]))
        out, index = _Dedupe(root), collections.Counter()
        for (split, word, _), (name, data) in zip(jobs, clips):
            index[split, word] += out.write(split, word, f"{name}_{index[split, word]:03d}"
                                                         ".wav", data)
        return dict(voices={"source_train": voices["source"], "source_val": voices["source"],
                            "target_train": voices["train"], "target_test": voices["test"]},
                    mbrola=note or "installed", packages=settings["packages"])

    return _cached("words", settings, cache_dir, write)


BUILDERS = dict(icons=build_icons, manpages=build_manpages, words=build_words)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=CACHE_DIR, help="cache folder for the built sets")
    parser.add_argument("--which", default="icons,manpages,words")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in args.which.split(","):
        start = time.time()
        paths = BUILDERS[name](seed=args.seed, cache_dir=args.out)
        root = os.path.dirname(paths["target_test"])
        with open(os.path.join(root, "manifest.json")) as f:
            manifest = json.load(f)
        print(f"== {name}: {root} ({time.time() - start:.1f} s now, "
              f"{manifest['seconds']} s to build)")
        for split, st in manifest["stats"].items():
            classes = sorted(os.listdir(paths[split])) if os.path.isdir(paths[split]) else []
            print(f"  {split:13s} {st['classes']:3d} classes, per class min/median/max "
                  f"{st['min']}/{st['median']}/{st['max']}, total {st['total']}: "
                  f"{', '.join(classes)}")
        for key, value in manifest["provenance"].items():
            for split, v in (value.items() if isinstance(value, dict) and all(
                    isinstance(x, (dict, list)) for x in value.values()) else [("", value)]):
                if isinstance(v, dict):  # {package: pages or version}, most pages first
                    v = ", ".join(f"{k} {n}" for k, n in sorted(v.items(), key=lambda kv: (
                        -kv[1] if isinstance(kv[1], int) else 0, kv[0])))
                elif isinstance(v, list):
                    v = ", ".join(map(str, v))
                print(f"  {key}{' ' + split if split else ''}: {v}")


if __name__ == "__main__":
    main()
