"""Pack the UCI handwritten digits (scikit-learn's copy) into digits.bin for beit-rs.

Source: the UCI ML "Optical Recognition of Handwritten Digits" test set (E. Alpaydin,
C. Kaynak, 1998; CC BY 4.0), as shipped by scikit-learn in
sklearn/datasets/data/digits.csv.gz: 1797 rows of 64 pixels (8x8, values 0..16) and a label.

Format of digits.bin: b"DIGITS01", then for each image one label byte (0..9) followed by
its 64 pixels, one byte each (0..16), row-major: 8 + 1797 * 65 = 116,813 bytes.

    python beit/data/make_digits.py   (needs scikit-learn)
"""
import gzip
import pathlib

import sklearn

src = pathlib.Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
rows = [list(map(int, map(float, line.split(",")))) for line in gzip.open(src, "rt") if line.strip()]
assert len(rows) == 1797 and all(len(r) == 65 for r in rows)
out = bytearray(b"DIGITS01")
for r in rows:
    assert all(0 <= v <= 16 for v in r[:64]) and 0 <= r[64] <= 9
    out.append(r[64])
    out.extend(r[:64])
pathlib.Path(__file__).with_name("digits.bin").write_bytes(bytes(out))
print(f"wrote {len(out)} bytes for {len(rows)} images")
