"""Small real multimodal data sets built only from Debian 12 packages (apt), for benchmarks.

Three sets, each an image (64x64 RGB PNG, transparency composited onto white),
human-written captions, a category label and, optionally, speech of the item's
name synthesised by espeak-ng (16 kHz mono 16-bit WAV):

- `app_icons`: the 64x64 application icons of Debian's AppStream (DEP-11)
  catalogue of bookworm/main, captioned by each application's summary and
  name, labelled by its freedesktop main category (Game, Utility, AudioVideo,
  Network, Graphics, System, Office, Development, Science, Education).
- `clipart`: Open Clip Art Library 0.18 (package openclipart-svg, public
  domain) rendered by rsvg-convert, captioned by each drawing's own title and
  description (its RDF metadata), labelled by its top-level folder (animals,
  food, people, transportation, ...).
- `theme_icons`: the Oxygen icon theme (oxygen-icon-theme), captioned by the
  icon's name and alias names as words ("document open") and, for MIME-type
  icons, shared-mime-info's description ("PDF document"), labelled by its
  context folder (actions, apps, devices, mimetypes, places, status, ...).

Each set is written to `ROOT/<set>/`:

- `images/*.png`, `audio/*.wav` (unless `audio=False`);
- `train.jsonl`, `test.jsonl`: one row per item, `{"image", "audio", "text",
  "label"}`, `text` the item's first caption: read by
  `kerasmm.data.from_manifest` as they are;
- `train_captions.jsonl`, `test_captions.jsonl`: one row per caption (an
  image with two captions is two rows with the same label), for retrieval and
  captioning with every human caption;
- `items.jsonl`: the full record of each item (`id`, `split`, `label`,
  `captions`, `speech`, source package, path and licence) -- not a
  `from_manifest` file (it has fields that reader refuses);
- `LICENSES.md` and `provenance.json` (package versions, sha256 of the
  downloaded catalogue, counts, build time).

The split is fixed per item by a hash of its stable id (20% test), so items
added by a newer package never move an existing item between splits. Items
are deduplicated (identical images, identical first captions; for app icons,
generic icons shared by three or more applications are dropped), each
category is capped at `per_label` items (chosen in hash order) and
categories with fewer than `min_label` items are dropped. Same packages, same
Pillow and espeak-ng: same files, byte for byte.

Needs root for apt (`install=True` installs what is missing:
appstream, librsvg2-bin, openclipart-svg, oxygen-icon-theme,
shared-mime-info, espeak-ng). The DEP-11 catalogue is fetched by `apt-get
update` into `ROOT/_apt_dep11/` (a private lists folder, with the DEP-11
targets this machine's apt configuration disables switched on for that one
call); nothing is downloaded except through apt.

Run: `.venv/bin/python benchmarks/real_data_sets.py --root /tmp/real_sets
[--sets app_icons,clipart,theme_icons] [--no-audio] [--per-label 200]`
(about 2 to 3 minutes on 2 cores once the packages are installed).
"""

import argparse
import collections
import glob
import gzip
import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import wave

import numpy as np
from PIL import Image

SIZE = 64
AUDIO_RATE = 16000
TEST_PERCENT = 20
VOICE = "en-us"
OPENCLIPART = "/usr/share/openclipart/svg"
OXYGEN = "/usr/share/icons/oxygen/base"
MIME_XML = "/usr/share/mime/packages/freedesktop.org.xml"
# freedesktop.org "Main Categories" (Audio and Video count as AudioVideo; Settings is too small to keep).
APP_CATEGORIES = ("AudioVideo", "Development", "Education", "Game", "Graphics", "Network", "Office",
                  "Science", "Settings", "System", "Utility")

_apt_updated = False


# ---------------------------------------------------------------- packages


def _installed(package):
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", package],
                            capture_output=True, text=True)
    return result.stdout.split()[-1] if result.stdout.startswith("install ok installed") else None


def ensure_packages(packages, install=True):
    """`{package: version}`, installing (apt-get, as root) the ones that are missing when `install`."""
    global _apt_updated
    missing = [p for p in packages if not _installed(p)]
    if missing:
        if not install:
            raise RuntimeError(f"missing Debian packages {missing}: apt-get install -y {' '.join(missing)}")
        if os.geteuid() != 0:
            raise RuntimeError(f"missing Debian packages {missing}; as root: apt-get install -y {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if not _apt_updated:
            subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
            _apt_updated = True
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    return {p: _installed(p) for p in packages}


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_dep11(cache_dir, install=True):
    """`(components.yml.gz, icons-64x64.tar.gz)` of bookworm/main, fetched by apt into `cache_dir` once."""
    lists = os.path.join(cache_dir, "lists")

    def found(name):
        return sorted(glob.glob(os.path.join(lists, f"*_debian_dists_bookworm_main_dep11_{name}")))

    if not (found("Components-amd64.yml.gz") and found("icons-64x64.tar.gz")):
        if not install:
            raise RuntimeError(f"no DEP-11 catalogue in {lists}; run with install=True (as root)")
        ensure_packages(["appstream"])  # its apt.conf.d/50appstream defines the DEP-11 index targets
        os.makedirs(os.path.join(lists, "partial"), exist_ok=True)
        options = [f"Dir::State::Lists={lists}",
                   "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=true",
                   "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=true"]
        subprocess.run(["apt-get", "update", "-q", *[a for o in options for a in ("-o", o)]],
                       check=True, stdout=subprocess.DEVNULL)
    components, icons = found("Components-amd64.yml.gz"), found("icons-64x64.tar.gz")
    if not (components and icons):
        raise RuntimeError(f"apt fetched no bookworm/main DEP-11 catalogue into {lists}")
    return components[0], icons[0]


# ---------------------------------------------------------------- images, text, audio


def to_png(image):
    """PNG bytes of `image` as 64x64 RGB on white (fitted, centred), or None if almost blank."""
    image = image.convert("RGBA")
    if image.size != (SIZE, SIZE):
        image.thumbnail((SIZE, SIZE), Image.LANCZOS)
        canvas = Image.new("RGBA", (SIZE, SIZE), (255, 255, 255, 0))
        canvas.paste(image, ((SIZE - image.width) // 2, (SIZE - image.height) // 2))
        image = canvas
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, image).convert("RGB")
    if (np.asarray(rgb).min(axis=2) < 245).mean() < 0.02:  # under 2% of pixels drawn
        return None
    out = io.BytesIO()
    rgb.save(out, "PNG")
    return out.getvalue()


def clean(text, limit=300):
    """A caption: entities decoded, mojibake repaired, whitespace collapsed, cut at a sentence within `limit`."""
    if not isinstance(text, str):
        return ""
    text = html.unescape(html.unescape(re.sub(r"<[^>]+>", " ", text)))
    try:
        text = text.encode("latin-1").decode("utf-8")  # UTF-8 read as Latin-1 ("LÃ©zard")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    text = " ".join(text.split()).strip(" .,;:-")
    if len(text) > limit:
        cut = text[:limit]
        text = cut[:cut.rfind(". ") + 1] if ". " in cut else cut[:cut.rfind(" ")]
    return text


def speak(text, path):
    """espeak-ng's speech of `text`, silence trimmed, resampled to 16 kHz, as a 16-bit mono WAV."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as raw:
        subprocess.run(["espeak-ng", "-v", VOICE, "-w", raw.name, text], check=True)
        with wave.open(raw.name) as w:
            rate = w.getframerate()
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    loud = np.flatnonzero(np.abs(samples) > 300)
    if loud.size:
        pad = rate // 20
        samples = samples[max(loud[0] - pad, 0):loud[-1] + pad]
    n_out = max(1, round(len(samples) * AUDIO_RATE / rate))
    spectrum = np.fft.rfft(samples)[: n_out // 2 + 1]  # band-limited (FFT) resampling
    resampled = np.fft.irfft(spectrum, n_out) * (n_out / len(samples))
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(AUDIO_RATE)
        w.writeframes(np.clip(np.round(resampled), -32768, 32767).astype("<i2").tobytes())
    return n_out / AUDIO_RATE


def caption_key(text):
    """What makes two captions "the same" for deduplication: case, digits, punctuation and "bw" ignored."""
    text = re.sub(r"\(b and w\)|\bb ?& ?w\b|\bbw\b", " ", text.casefold())
    text = re.sub(r"[\d\W_]+", " ", text)
    return " ".join(text.split())


def _hash(set_name, item_id):
    return hashlib.sha256(f"{set_name}:{item_id}".encode()).hexdigest()


def _slug(item_id):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._")[:80]


# ---------------------------------------------------------------- selection and writing


def _select(set_name, candidates, render, per_label, min_label):
    """Deduplicated, capped items: candidates in hash-of-id order, rendered lazily until a category is full.

    `candidates`: dicts with "id", "label", "captions" (first one primary); `render(item)` gives PNG bytes
    or None. Returns `(items, stats)`, items in (label, id) order, each with "png".
    """
    stats = collections.Counter()
    seen_images, seen_captions = set(), set()
    chosen = collections.defaultdict(list)
    for item in sorted(candidates, key=lambda c: _hash(set_name, c["id"])):
        if len(chosen[item["label"]]) >= per_label:
            continue
        key = caption_key(item["captions"][0])
        if key in seen_captions:
            stats["dropped: same first caption as another item"] += 1
            continue
        png = render(item)
        if png is None:
            stats["dropped: not renderable or blank"] += 1
            continue
        digest = hashlib.sha256(png).hexdigest()
        if digest in seen_images:
            stats["dropped: same image as another item"] += 1
            continue
        seen_images.add(digest)
        seen_captions.add(key)
        chosen[item["label"]].append(dict(item, png=png))
    small = sorted(label for label, items in chosen.items() if len(items) < min_label)
    if small:
        stats[f"dropped: categories under {min_label} items {small}"] = sum(len(chosen[s]) for s in small)
    items = [item for label in sorted(chosen) if label not in small
             for item in sorted(chosen[label], key=lambda i: i["id"])]
    return items, dict(stats)


def _write(root, set_name, items, audio, licenses_md, provenance):
    """Write the set's files into `root/set_name` (built aside, then swapped in)."""
    final = os.path.join(root, set_name)
    work = final + ".building"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "images"))
    if audio:
        os.makedirs(os.path.join(work, "audio"))
    rows = {"train": [], "test": [], "train_captions": [], "test_captions": []}
    records, slugs, seconds = [], set(), []
    for item in items:
        slug = _slug(item["id"])
        if slug in slugs:
            slug = f"{slug}_{_hash(set_name, item['id'])[:8]}"
        slugs.add(slug)
        split = "test" if int(_hash(set_name, item["id"])[:8], 16) % 100 < TEST_PERCENT else "train"
        record = {"id": item["id"], "split": split, "label": item["label"], "captions": item["captions"],
                  "image": f"images/{slug}.png"}
        with open(os.path.join(work, record["image"]), "wb") as f:
            f.write(item["png"])
        row = {"image": record["image"]}
        if audio:
            record["speech"] = item["speech"]
            record["audio"] = row["audio"] = f"audio/{slug}.wav"
            seconds.append(speak(item["speech"], os.path.join(work, record["audio"])))
        rows[split].append(dict(row, text=item["captions"][0], label=item["label"]))
        rows[f"{split}_captions"] += [dict(row, text=caption, label=item["label"]) for caption in item["captions"]]
        records.append(dict(record, source=item["source"]))
    for name, lines in [("items", records), *rows.items()]:
        with open(os.path.join(work, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    counts = collections.Counter((r["label"], r["split"]) for r in records)
    provenance = dict(provenance, set=set_name, items=len(records),
                      train=len(rows["train"]), test=len(rows["test"]),
                      captions=sum(len(r["captions"]) for r in records),
                      labels={label: {"train": counts[label, "train"], "test": counts[label, "test"]}
                              for label in sorted({r["label"] for r in records})})
    if audio:
        provenance["speech_seconds"] = {"voice": f"espeak-ng {VOICE}", "mean": round(float(np.mean(seconds)), 2),
                                        "max": round(float(np.max(seconds)), 2)}
    with open(os.path.join(work, "provenance.json"), "w", encoding="utf-8") as f:
        json.dump(provenance, f, indent=1, ensure_ascii=False)
        f.write("\n")
    speech_note = ("\nSpeech (`audio/`): synthesised by espeak-ng (GPL-3+) from the item's `speech` text; "
                   "its output is data made by the program, under the licence of the text it speaks.\n"
                   if audio else "")
    with open(os.path.join(work, "LICENSES.md"), "w", encoding="utf-8") as f:
        f.write(f"# {set_name}: sources and licences\n\n{licenses_md.strip()}\n{speech_note}")
    shutil.rmtree(final, ignore_errors=True)
    os.rename(work, final)
    return provenance


# ---------------------------------------------------------------- the sets


def _c_locale(field):
    field = field or {}
    return field.get("C") or field.get("en") or field.get("en_US") or field.get("en_GB") or ""


def build_app_icons(root, install=True, audio=True, per_label=200, min_label=20):
    """Debian's AppStream catalogue (bookworm/main): app icons, summary + name, main category."""
    import yaml  # PyYAML (with libyaml: the catalogue parses in about 2 s)

    packages = ensure_packages(["appstream"] + (["espeak-ng"] if audio else []), install)
    components_path, icons_path = fetch_dep11(os.path.join(root, "_apt_dep11"), install)
    with gzip.open(components_path) as f:
        header, *docs = yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    with tarfile.open(icons_path) as tar:
        icons = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    candidates, stats = [], collections.Counter()
    for doc in docs:
        if doc.get("Type") != "desktop-application":
            continue
        cats = set(doc.get("Categories") or [])
        if cats & {"Audio", "Video"}:
            cats.add("AudioVideo")
        main = [c for c in APP_CATEGORIES if c in cats]
        if main == ["Education", "Science"]:
            main = ["Science"]  # the usual pairing for science programs
        if len(main) != 1:
            stats["dropped: no single main category"] += 1
            continue
        cached = [i["name"] for i in (doc.get("Icon") or {}).get("cached", [])
                  if i.get("width") == SIZE and not i.get("scale", 1) > 1 and i["name"] in icons]
        name, summary = clean(_c_locale(doc.get("Name"))), clean(_c_locale(doc.get("Summary")))
        if not cached or not name:
            stats["dropped: no 64x64 icon or no name"] += 1
            continue
        candidates.append({"id": doc["ID"], "label": main[0], "icon": cached[0], "speech": name,
                           "captions": [c for c in dict.fromkeys([summary, name]) if c],
                           "source": {"package": doc.get("Package"), "dep11_icon": cached[0],
                                      "license": doc.get("ProjectLicense")}})
    # An icon several applications share is a generic fallback (audio-x-generic, ...), not the app's own.
    users = collections.Counter(hashlib.sha256(icons[c["icon"]]).hexdigest() for c in candidates)
    generic = [c for c in candidates if users[hashlib.sha256(icons[c["icon"]]).hexdigest()] >= 3]
    stats["dropped: generic icon shared by 3+ applications"] = len(generic)
    candidates = [c for c in candidates if c not in generic]

    def render(item):
        return to_png(Image.open(io.BytesIO(icons[item["icon"]])))

    items, more = _select("app_icons", candidates, render, per_label, min_label)
    licenses = collections.Counter(i["source"]["license"] or "not stated in the catalogue" for i in items)
    in_release = sorted(glob.glob(os.path.join(os.path.dirname(components_path), "*_debian_dists_bookworm_InRelease")))
    release_date = ""
    if in_release:
        with open(in_release[0], encoding="utf-8", errors="replace") as f:
            release_date = next((line.split(":", 1)[1].strip() for line in f if line.startswith("Date:")), "")
    licenses_md = f"""
Source: Debian's AppStream (DEP-11) catalogue of bookworm/main (`Components-amd64.yml.gz` and
`icons-64x64.tar.gz`, fetched by `apt-get update`; catalogue generated {header.get('Time')}, Release
file dated {release_date}). Names and summaries come from each application's AppStream metainfo or
.desktop file; the icons from each package's own files.

- Names and summaries: upstream AppStream metadata, which the AppStream specification requires to be
  under a permissive licence (usually CC0-1.0 or FSFAP); entries built from .desktop files carry no
  stated metadata licence and are under the package's licence.
- Icons: under the licence of the package that ships them (`source.package` in items.jsonl; see
  /usr/share/doc/PACKAGE/copyright once that package is installed). All are from Debian main, so
  DFSG-free. `source.license` is the project licence the catalogue states, where it states one.
- Project licences of the {len(items)} items (as stated in the catalogue):
""" + "".join(f"  - {name}: {count}\n" for name, count in licenses.most_common())
    provenance = {"packages": packages, "stats": dict(stats, **more), "dep11": {
        "header": {k: str(v) for k, v in header.items()}, "release_date": release_date,
        os.path.basename(components_path): _sha256_file(components_path),
        os.path.basename(icons_path): _sha256_file(icons_path)}}
    return _write(root, "app_icons", items, audio, licenses_md, provenance)


_RDF_WORK = re.compile(r"<cc:Work\b.*?</cc:Work>", re.S)
_TAG = lambda tag: re.compile(rf"<dc:{tag}>(.*?)</dc:{tag}>", re.S)  # noqa: E731
_JUNK = re.compile(r"@|https?:|www\.|HASH\(0x|public domain|licen[cs]e|copyright", re.I)  # not a description
_NOT_TITLES = {"open clip art library", "open clip art project", "untitled", "clipart", "clip art", "image", ""}


def _clipart_meta(path):
    """`(title, description, keywords)` from an Open Clip Art SVG's RDF metadata."""
    with open(path, encoding="utf-8", errors="replace") as f:
        svg = f.read()
    work = _RDF_WORK.search(svg)
    work = work.group(0) if work else svg
    titles = [clean(t) for t in _TAG("title").findall(work)]
    creators = {t.casefold() for t in titles[1:]}
    title = titles[0] if titles else ""
    title = re.sub(r"^clip ?art by [^-]+- *|\bopen ?clip ?art\b", "", title, flags=re.I)
    title = " ".join(title.replace("_", " ").split())
    if title.casefold() in _NOT_TITLES or title.casefold() in creators or len(title) < 3 or _JUNK.search(title):
        title = ""
    description = clean((_TAG("description").findall(work) or [""])[0])
    if description.casefold() in creators or _JUNK.search(description):
        description = ""
    keywords = [clean(k) for k in re.findall(r"<rdf:li>(.*?)</rdf:li>", work, re.S)]
    keywords = [k for k in dict.fromkeys(keywords) if k and k.casefold() not in creators]
    return title, description, keywords


def _rsvg(path):
    try:
        result = subprocess.run(["rsvg-convert", "-w", str(SIZE), "-h", str(SIZE), "-a", path],
                                capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0 or not result.stdout:
        return None
    try:
        return to_png(Image.open(io.BytesIO(result.stdout)))
    except OSError:
        return None


def build_clipart(root, install=True, audio=True, per_label=150, min_label=20):
    """Open Clip Art Library 0.18 (openclipart-svg): drawings, their titles and descriptions, top folder."""
    packages = ensure_packages(["openclipart-svg", "librsvg2-bin"] + (["espeak-ng"] if audio else []), install)
    by_content = collections.defaultdict(list)  # the package files one drawing under several folders
    for path in sorted(glob.glob(os.path.join(OPENCLIPART, "**", "*.svg"), recursive=True)):
        if not os.path.islink(path):
            by_content[_sha256_file(path)].append(os.path.relpath(path, OPENCLIPART))
    stats, candidates = collections.Counter(), []
    for paths in by_content.values():
        paths = [p for p in paths if p.split("/")[0] not in ("unsorted", "special")]  # duplicates, examples
        folders = {p.split("/")[0] for p in paths}
        if len(folders) > 1:
            stats["dropped: drawing filed under several top folders"] += 1
        if len(folders) != 1:
            continue
        label = folders.pop()
        rel = max(paths, key=lambda p: (p.count("/"), p))  # the most specific folder
        title, description, keywords = _clipart_meta(os.path.join(OPENCLIPART, rel))
        if not title:
            stats["dropped: no usable title"] += 1
            continue
        captions = [title] + ([description] if description and description.casefold() != title.casefold() else [])
        candidates.append({"id": rel, "label": label, "captions": captions, "speech": title,
                           "source": {"package": "openclipart-svg", "path": os.path.join(OPENCLIPART, rel),
                                      "keywords": keywords, "license": "public domain (Open Clip Art Library)"}})

    items, more = _select("clipart", candidates, lambda i: _rsvg(i["source"]["path"]), per_label, min_label)
    licenses_md = f"""
Source: Debian package openclipart-svg {packages['openclipart-svg']} (Open Clip Art Library 0.18), rendered to
64x64 by rsvg-convert (librsvg2-bin {packages['librsvg2-bin']}) and composited onto white.

- Drawings, titles, descriptions and keywords: public domain (Creative Commons Public Domain
  Dedication, /usr/share/doc/openclipart-svg/copyright); each SVG names its author in its metadata.
- Labels: the drawing's top-level folder in the package (`unsorted` and `special` left out).
- Captions are the authors' own titles and descriptions, some not in English (e.g. Italian titles).
"""
    return _write(root, "clipart", items, audio, licenses_md, {"packages": packages, "stats": dict(stats, **more)})


def _mime_comments():
    """`{"application-pdf": "PDF document", ...}`: shared-mime-info's English descriptions, by icon name."""
    import xml.etree.ElementTree as ET

    ns = "{http://www.freedesktop.org/standards/shared-mime-info}"
    lang = "{http://www.w3.org/XML/1998/namespace}lang"
    comments = {}
    for mime in ET.parse(MIME_XML).getroot().iter(f"{ns}mime-type"):
        comment = next((c.text for c in mime.findall(f"{ns}comment") if lang not in c.attrib), None)
        if comment:
            comments[mime.get("type").replace("/", "-", 1)] = clean(comment)
    return comments


def build_theme_icons(root, install=True, audio=True, per_label=200, min_label=20):
    """The Oxygen icon theme: icons, their names and aliases as words (+ MIME descriptions), context folder."""
    packages = ensure_packages(["oxygen-icon-theme", "shared-mime-info"] + (["espeak-ng"] if audio else []), install)
    comments = _mime_comments()
    files = {}  # (context, name) -> the PNG at the best size; sizes from 64 down, then larger
    aliases = collections.defaultdict(set)  # real file -> icon names linked to it
    for size in ("64x64", "128x128", "256x256", "48x48", "32x32"):
        for path in sorted(glob.glob(os.path.join(OXYGEN, size, "*", "*.png"))):
            context, name = path.split("/")[-2], os.path.basename(path)[:-4]
            real = os.path.realpath(path)
            if os.path.islink(path):
                target = os.path.relpath(real, OXYGEN).split("/", 1)[-1]
                if target.startswith(f"{context}/"):  # an alias in another context names another use
                    aliases[target].add(name)
            else:
                files.setdefault((context, name), path)
    words = lambda name: " ".join(re.split(r"[-_.]+", name)).strip()  # noqa: E731
    candidates = []
    for (context, name), path in sorted(files.items()):
        if context in ("animations", "applets", "special"):
            continue
        names = [name] + sorted(aliases.get(f"{context}/{name}.png", set()) - {name})[:3]
        captions = [words(n) for n in names] + [comments[n] for n in names if n in comments]
        candidates.append({"id": f"{context}/{name}", "label": context, "speech": words(name),
                           "captions": list({c.casefold(): c for c in captions if c}.values()),
                           "source": {"package": "oxygen-icon-theme", "path": path, "license": "LGPL-3+"}})
    def render(item):
        with Image.open(item["source"]["path"]) as image:
            return to_png(image)

    items, stats = _select("theme_icons", candidates, render, per_label, min_label)
    licenses_md = f"""
Source: Debian package oxygen-icon-theme {packages['oxygen-icon-theme']} (the Oxygen icons of KDE), the PNG
of each icon at 64x64 where the theme has one, else the nearest size resized (128, 256, 48, 32).

- Icons: LGPL-3+ (/usr/share/doc/oxygen-icon-theme/copyright).
- Captions: the icon's name and alias names (symbolic links in the theme) as words; for MIME-type
  icons also the English description of shared-mime-info {packages['shared-mime-info']}
  (GPL-2+, /usr/share/mime/packages/freedesktop.org.xml).
- Labels: the icon's context folder (actions, apps, devices, mimetypes, places, status, ...).
  Note that names often give the context away (MIME-type names start with their media type).
"""
    return _write(root, "theme_icons", items, audio, licenses_md, {"packages": packages, "stats": stats})


SETS = {"app_icons": build_app_icons, "clipart": build_clipart, "theme_icons": build_theme_icons}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=os.path.expanduser("~/.cache/kerasmm/real_data_sets"))
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--no-audio", action="store_true", help="no espeak-ng speech")
    parser.add_argument("--no-install", action="store_true", help="fail instead of running apt-get")
    parser.add_argument("--per-label", type=int, default=None, help="cap per category (default: per set)")
    args = parser.parse_args(argv)
    os.makedirs(args.root, exist_ok=True)
    for name in args.sets.split(","):
        if name not in SETS:
            parser.error(f"unknown set {name!r}; sets: {', '.join(SETS)}")
        start = time.time()
        kwargs = {} if args.per_label is None else {"per_label": args.per_label}
        info = SETS[name](args.root, install=not args.no_install, audio=not args.no_audio, **kwargs)
        with open(os.path.join(args.root, name, "items.jsonl"), encoding="utf-8") as f:
            items = [json.loads(line) for line in f]
        print(f"{name}: {info['train']} train, {info['test']} test, {len(info['labels'])} categories "
              f"({', '.join(info['labels'])}), {info['captions']} captions, {time.time() - start:.0f} s")
        for item in items[:: max(1, len(items) // 5)][:5]:
            print(f"  [{item['label']}] {' | '.join(item['captions'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
