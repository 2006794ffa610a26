#!/usr/bin/env python3
"""Rebuild the Amazon-2014 Beauty 5-core RecBole atomic files from public originals.

Writes ``amazon-beauty.inter.gz`` and ``amazon-beauty.item.gz`` (RecBole atomic
files, tab-separated, gzip-compressed) from byte-for-byte copies of files that
are committed to public GitHub repositories (see datasets/README.md and the
SOURCES.md of the raw folder):

  original/zhaodong-liu__GRAM/user_sequence.txt          reviewerID ASIN1 ASIN2 ... (chronological)
  original/aHuiWang__CIKM2020-S3Rec/Beauty.txt           uid iid1 iid2 ...          (P5 integer ids)
  original/aHuiWang__CIKM2020-S3Rec/Beauty_item2attributes.json
                                                         P5 item id -> S3-Rec attribute ids
  original/Wenyueh__LLM-RecSys-ID/datamaps.json          P5 ids <-> ASIN / reviewerID, attribute names
  original/dh-r__LLM-Sequential-Recommendation/products_lookup.csv, item_id_to_int.json
                                                         product titles, keyed by ASIN
  original/AraVio__TimeWeaver/Beauty.txt                 uid iid1 ... <TAB> dt1 ... (gaps in seconds)

Everything is rebuilt from ``original/``; ``derived/`` is not read.  The joins
are cross-checked (GRAM, S3-Rec and TimeWeaver must describe the same
sequences) and the script stops on any disagreement.

Output layout:

  amazon-beauty.inter   user_id:token  item_id:token  timestamp:float
      Users in P5 user-id order, each user's items in chronological order.
      Timestamps are reconstructed: only the order and the day gaps are real.
      timestamp = 1300000000 + 86400 * (days since the user's first review)
                  + position of the interaction in the user's sequence,
      so same-day interactions keep the source order (one second apart).
  amazon-beauty.item    item_id:token  title:token  brand:token  categories:token_seq
      Items in P5 item-id order; empty string for a missing title or brand;
      categories written in RecBole's Amazon style: 'Makeup', 'Nails', 'Nail Polish'.

Usage:
  python datasets/build_amazon_beauty.py            # rebuild and verify
  python datasets/build_amazon_beauty.py --check    # only verify existing .gz files

Standard library only; Python 3.9+.
"""

import argparse
import csv
import gzip
import hashlib
import json
import sys
import time
from pathlib import Path

SCRIPT_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPT_DIR.parent
DEFAULT_RAW = REPO_ROOT.parent / "shared" / "datasets" / "amazon-beauty-raw"  # ../shared from the repo root
DEFAULT_OUT = SCRIPT_DIR / "amazon-beauty"

INTER_NAME = "amazon-beauty.inter"
ITEM_NAME = "amazon-beauty.item"

# sha256 of the decompressed files; --check and every rebuild compare against these.
EXPECTED_SHA256 = {
    INTER_NAME: "a51f11ae4daa1af2960010f6d95f46efd3d2892d0ace68684732d81278955863",
    ITEM_NAME: "969ec488d0ee912014660bb040be4424e55a00da6766b78e9c91cc70be88643c",
}

# Arbitrary origin for the reconstructed clock (2011-03-13 UTC); absolute dates are not known.
TIMESTAMP_ORIGIN = 1_300_000_000
SECONDS_PER_DAY = 86_400
# S3-Rec kept only attributes occurring at least this often (attributeid2num in datamaps.json).
S3REC_MIN_ATTRIBUTE_COUNT = 5


class SourceMismatch(RuntimeError):
    """The public source files disagree where they should describe the same data."""


def read_int_sequences(path):
    """Read ``uid iid1 iid2 ...`` lines into {uid: [iid, ...]} (ints, file order kept)."""
    sequences = {}
    with open(path, encoding="ascii") as handle:
        for line in handle:
            user, *items = map(int, line.split())
            sequences[user] = items
    return sequences


def read_timeweaver(path):
    """Read TimeWeaver ``uid iid1 ... <TAB> dt1 ...`` into {uid: (items, gaps in seconds)}."""
    sequences = {}
    with open(path, encoding="ascii") as handle:
        for line in handle:
            ids_part, gaps_part = line.rstrip("\n").split("\t")
            user, *items = map(int, ids_part.split())
            gaps = [int(gap) for gap in gaps_part.split()]
            if len(gaps) != len(items):
                raise SourceMismatch(f"TimeWeaver user {user}: {len(items)} items, {len(gaps)} gaps")
            sequences[user] = (items, gaps)
    return sequences


def read_gram_sequences(path):
    """Read GRAM ``reviewerID ASIN1 ASIN2 ...`` lines into {reviewerID: [ASIN, ...]}."""
    sequences = {}
    with open(path, encoding="ascii") as handle:
        for line in handle:
            reviewer, *asins = line.split()
            sequences[reviewer] = asins
    return sequences


def build_inter_lines(raw, datamaps):
    """Join the sequence sources and return the .inter lines (header included)."""
    original = raw / "original"
    s3rec = read_int_sequences(original / "aHuiWang__CIKM2020-S3Rec" / "Beauty.txt")
    timeweaver = read_timeweaver(original / "AraVio__TimeWeaver" / "Beauty.txt")
    gram = read_gram_sequences(original / "zhaodong-liu__GRAM" / "user_sequence.txt")
    id2user, id2item = datamaps["id2user"], datamaps["id2item"]

    if not (len(s3rec) == len(timeweaver) == len(gram) == len(id2user)):
        raise SourceMismatch("sequence files list different numbers of users")

    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in sorted(s3rec):
        items, gaps = timeweaver[user]
        if items != s3rec[user]:
            raise SourceMismatch(f"user {user}: TimeWeaver and S3-Rec sequences differ")
        reviewer = id2user[str(user)]
        asins = [id2item[str(item)] for item in items]
        if asins != gram.get(reviewer):
            raise SourceMismatch(f"user {user} ({reviewer}): GRAM sequence differs")
        if any(gap < 0 or gap % SECONDS_PER_DAY for gap in gaps):
            raise SourceMismatch(f"user {user}: gaps are not whole non-negative days")

        elapsed = 0
        for position, (asin, gap) in enumerate(zip(asins, gaps)):
            elapsed += gap
            # Adding the position keeps same-day interactions in source order, one second apart.
            timestamp = TIMESTAMP_ORIGIN + elapsed + position
            lines.append(f"{reviewer}\t{asin}\t{timestamp}")
    return lines


def decode_s3rec_attributes(raw, datamaps):
    """Return {P5 item id: [attribute name, ...]} decoded from S3-Rec attribute ids.

    S3-Rec renumbered the datamaps attributes it kept (count >= 5): its id j is the
    j-th kept attribute in increasing datamaps-id order, counting from 1.
    """
    path = raw / "original" / "aHuiWang__CIKM2020-S3Rec" / "Beauty_item2attributes.json"
    with open(path, encoding="utf-8") as handle:
        item_to_attribute_ids = json.load(handle)
    kept_ids = sorted(
        int(attribute_id)
        for attribute_id, count in datamaps["attributeid2num"].items()
        if count >= S3REC_MIN_ATTRIBUTE_COUNT
    )
    names = [datamaps["id2attribute"][str(attribute_id)] for attribute_id in kept_ids]
    return {
        int(item): [names[attribute_id - 1] for attribute_id in attribute_ids]
        for item, attribute_ids in item_to_attribute_ids.items()
    }


def read_dhr_titles(raw):
    """Return {ASIN: title} from dh-r's products_lookup.csv joined through item_id_to_int.json."""
    folder = raw / "original" / "dh-r__LLM-Sequential-Recommendation"
    with open(folder / "item_id_to_int.json", encoding="utf-8") as handle:
        asin_to_product = json.load(handle)
    with open(folder / "products_lookup.csv", newline="", encoding="utf-8") as handle:
        product_to_title = {int(row["global_product_id"]): row["name"] for row in csv.DictReader(handle)}
    # dh-r turned '&' into ' and ', leaving double spaces, and kept some trailing
    # spaces; collapsing all whitespace also keeps tabs/newlines out of the TSV.
    return {asin: " ".join(product_to_title[product].split()) for asin, product in asin_to_product.items()}


def build_item_lines(raw, datamaps):
    """Join titles and S3-Rec attributes and return the .item lines (header included)."""
    attributes = decode_s3rec_attributes(raw, datamaps)
    titles = read_dhr_titles(raw)
    id2item = datamaps["id2item"]
    if set(attributes) != set(map(int, id2item)):
        raise SourceMismatch("S3-Rec attributes do not cover exactly the datamaps items")

    # A leading attribute is a brand only if that string is never a category,
    # i.e. it never occurs after position 0 in any item's list.
    non_leading = {name for names in attributes.values() for name in names[1:]}

    lines = ["item_id:token\ttitle:token\tbrand:token\tcategories:token_seq"]
    for item in sorted(attributes):
        asin = id2item[str(item)]
        names = attributes[item]
        has_brand = names[0] not in non_leading
        brand = names[0] if has_brand else ""  # 18 items carry an empty-string brand
        # Category paths of several listings can repeat a level; keep the first occurrence.
        categories = list(dict.fromkeys(names[1:] if has_brand else names))
        categories_field = ", ".join(f"'{category}'" for category in categories)
        lines.append(f"{asin}\t{titles[asin]}\t{brand}\t{categories_field}")
    return lines


def write_gzip_deterministic(path, data):
    """Write bytes gzip-compressed with no timestamp or file name, so reruns are byte-identical."""
    with open(path, "wb") as raw_handle:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw_handle, compresslevel=9, mtime=0) as handle:
            handle.write(data)


def sha256_of_gzip(path):
    """Return the sha256 hex digest of a gzip file's decompressed contents."""
    digest = hashlib.sha256()
    with gzip.open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(out):
    """Compare the decompressed sha256 of each .gz file in ``out``; print them; return success."""
    ok = True
    for name, expected in EXPECTED_SHA256.items():
        path = out / f"{name}.gz"
        if not path.exists():
            print(f"MISSING  {path}")
            ok = False
            continue
        actual = sha256_of_gzip(path)
        status = "OK      " if actual == expected else "MISMATCH"
        ok &= actual == expected
        print(f"{status} {actual}  {name} (from {path.name}, {path.stat().st_size} bytes)")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, default=DEFAULT_RAW,
                        help="folder holding original/ (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder for the .gz files (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="only verify the existing .gz files against the recorded sha256")
    args = parser.parse_args(argv)

    if args.check:
        return 0 if verify(args.out) else 1

    started = time.monotonic()
    raw = args.raw.resolve()
    if not (raw / "original").is_dir():
        parser.error(f"no original/ folder under {raw}; pass --raw")
    with open(raw / "original" / "Wenyueh__LLM-RecSys-ID" / "datamaps.json", encoding="utf-8") as handle:
        datamaps = json.load(handle)

    outputs = {
        INTER_NAME: build_inter_lines(raw, datamaps),
        ITEM_NAME: build_item_lines(raw, datamaps),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, lines in outputs.items():
        # The atomic files are plain ASCII with LF line ends and a final newline.
        data = ("\n".join(lines) + "\n").encode("ascii")
        write_gzip_deterministic(args.out / f"{name}.gz", data)
        print(f"wrote {args.out / name}.gz: {len(lines) - 1} rows")

    ok = verify(args.out)
    print(f"done in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
