//! Mutations of valid files: bit flips, truncations, splices, byte and word writes, edits of
//! the numbers in text, and random bytes; built from plain integers so that proptest and the
//! long-run driver draw them the same way.

use beit::engine::rng::Rng;

/// Numbers a hostile or mistyped file might hold, written over the digits of a text file.
const NUMBERS: [&str; 14] = [
    "0", "1", "-1", "2", "3", "7", "65536", "1000000000", "4294967296", "18446744073709551615",
    "99999999999999999999999", "1e308", "-0.0", "NaN",
];

/// 32-bit words a hostile binary header might hold (sizes, lengths, offsets).
const WORDS: [u32; 9] = [0, 1, 2, 0xFF, 0xFFFF, 100_000, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x8000_0000];

/// One change to a file's bytes; positions wrap around the length (or the `focus` region).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Flip bit `bit` of the byte at `pos`.
    FlipBit { pos: usize, bit: u8 },
    /// Keep only the first `len` bytes.
    Truncate { len: usize },
    /// Copy `len` bytes from `from` over `to` (within the file).
    Splice { from: usize, to: usize, len: usize },
    /// Set the byte at `pos`.
    SetByte { pos: usize, value: u8 },
    /// Write a 32-bit word (big- or little-endian) at `pos`.
    SetWord { pos: usize, word: u32, big_endian: bool },
    /// Replace the `nth` run of ASCII digits (wrapping) with one of [`NUMBERS`].
    EditNumber { nth: usize, number: usize },
    /// Replace the whole file with `len` random bytes drawn from `seed`.
    Random { len: usize, seed: u64 },
}

impl Mutation {
    /// The mutation of kind `kind` (any integer; 7 kinds) with parameters `a`, `b`, `c`.
    /// Positions fall within the first `focus` bytes when `c` is even (headers are where
    /// sizes live), anywhere otherwise.
    pub fn from_parts(kind: u8, a: u64, b: u64, c: u64, focus: usize) -> Mutation {
        let pos = |v: u64| if c.is_multiple_of(2) { (v % focus.max(1) as u64) as usize } else { v as usize };
        match kind % 7 {
            0 => Mutation::FlipBit { pos: pos(a), bit: (b % 8) as u8 },
            1 => Mutation::Truncate { len: pos(a) },
            2 => Mutation::Splice { from: a as usize, to: pos(b), len: (c % 64) as usize + 1 },
            3 => Mutation::SetByte { pos: pos(a), value: b as u8 },
            4 => Mutation::SetWord { pos: pos(a), word: WORDS[b as usize % WORDS.len()], big_endian: c % 4 < 2 },
            5 => Mutation::EditNumber { nth: a as usize, number: b as usize % NUMBERS.len() },
            _ => Mutation::Random { len: (a % 4096) as usize, seed: b },
        }
    }

    /// Between 1 and 4 mutations drawn from `rng` (the driver's generator).
    pub fn random_list(rng: &mut Rng, focus: usize) -> Vec<Mutation> {
        let n = 1 + rng.below(4);
        (0..n).map(|_| Mutation::from_parts(rng.next_u64() as u8, rng.next_u64(), rng.next_u64(), rng.next_u64(), focus)).collect()
    }

    /// Apply to `data` in place.
    pub fn apply(&self, data: &mut Vec<u8>) {
        let n = data.len();
        match *self {
            Mutation::FlipBit { pos, bit } if n > 0 => data[pos % n] ^= 1 << bit,
            Mutation::Truncate { len } => data.truncate(len % (n + 1)),
            Mutation::Splice { from, to, len } if n > 0 => {
                let (from, to) = (from % n, to % n);
                let len = len.min(n - from).min(n - to);
                data.copy_within(from..from + len, to);
            }
            Mutation::SetByte { pos, value } if n > 0 => data[pos % n] = value,
            Mutation::SetWord { pos, word, big_endian } if n >= 4 => {
                let at = pos % (n - 3);
                let bytes = if big_endian { word.to_be_bytes() } else { word.to_le_bytes() };
                data[at..at + 4].copy_from_slice(&bytes);
            }
            Mutation::EditNumber { nth, number } => edit_number(data, nth, NUMBERS[number % NUMBERS.len()]),
            Mutation::Random { len, seed } => {
                let mut rng = Rng::new(seed);
                *data = (0..len).map(|_| rng.next_u64() as u8).collect();
            }
            _ => {}
        }
    }
}

/// Replace the `nth` (wrapping) run of ASCII digits in `data` with `number`.
fn edit_number(data: &mut Vec<u8>, nth: usize, number: &str) {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i].is_ascii_digit() {
            let start = i;
            while i < data.len() && data[i].is_ascii_digit() {
                i += 1;
            }
            runs.push(start..i);
        } else {
            i += 1;
        }
    }
    if !runs.is_empty() {
        let run = runs[nth % runs.len()].clone();
        data.splice(run, number.bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_do_what_they_say() {
        let base = br#"{"a": 12, "b": [3, 45]}"#.to_vec();
        let run = |m: Mutation| {
            let mut d = base.clone();
            m.apply(&mut d);
            String::from_utf8_lossy(&d).into_owned()
        };
        assert_eq!(run(Mutation::EditNumber { nth: 2, number: 6 }), r#"{"a": 12, "b": [3, 65536]}"#);
        assert_eq!(run(Mutation::EditNumber { nth: 4, number: 2 }), r#"{"a": 12, "b": [-1, 45]}"#);
        assert_eq!(run(Mutation::Truncate { len: 5 }), r#"{"a":"#);
        assert_eq!(run(Mutation::FlipBit { pos: 0, bit: 0 }), r#"z"a": 12, "b": [3, 45]}"#);
        assert_eq!(run(Mutation::SetWord { pos: 1, word: 0x41424344, big_endian: true }), r#"{ABCD 12, "b": [3, 45]}"#);
        assert_eq!(run(Mutation::Splice { from: 1, to: 10, len: 3 }), r#"{"a": 12, "a": [3, 45]}"#);
        let mut random = base.clone();
        Mutation::Random { len: 9, seed: 1 }.apply(&mut random);
        assert!(random.len() == 9 && random != base[..9]);
        assert_eq!(Mutation::from_parts(3, 100, 7, 0, 10), Mutation::SetByte { pos: 0, value: 7 });
        assert_eq!(Mutation::from_parts(10, 100, 1, 1, 10), Mutation::SetByte { pos: 100, value: 1 });
    }
}
