//! Fuzz suite of the parsers (issue 17): structured and mutation fuzzing of the IDX and CSV
//! readers and of the checkpoint loader. Properties: no input panics (proptest fails on a
//! panic) or aborts, and — measured by the counting global allocator of this test binary — no
//! input makes a parser allocate more than a stated multiple of its own size:
//!
//! - IDX, raw: peak live bytes ≤ 4 × input + 64 KiB (the payload, then its decoded elements);
//! - IDX, gzip: ≤ 4 × 1032 × input + 1 MiB (deflate expands at most 1032:1; the payload
//!   buffer grows by doubling, then is decoded; the decoder's own state);
//! - CSV: ≤ 48 × input + 64 KiB (one small string per field while records are split);
//! - checkpoints: ≤ 8 × file + 256 KiB (the file, its parsed header, the tensors' copies).
//!
//! Cases per property: proptest's default (256) or `PROPTEST_CASES`; failing inputs are kept in
//! `tests/fuzz_parsers.proptest-regressions` and rerun first.

use kiln::data::{parse_csv, parse_idx, CsvOptions, Header, LabelColumn, Labels};
use kiln::prelude::*;
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Counts the live bytes allocated by each thread, and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are
// thread-local cells with constant initialisers, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the peak of the bytes it had live at once on this
/// thread (beyond what was live before).
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    let peak = PEAK.with(Cell::get) - base;
    (r, peak.max(0) as usize)
}

fn config() -> Config {
    // `Config::default()` reads PROPTEST_CASES; a long local run sets it.
    Config {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..Config::default()
    }
}

// ---------------------------------------------------------------- IDX

/// Dimensions that hit the edges: empty, small, and sizes whose product overflows.
fn idx_dim() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..6,
        1 => Just(255u32),
        1 => Just(1u32 << 16),
        1 => Just(1u32 << 31),
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ]
}

/// A structured IDX file: a magic number (usually valid), dimensions, and a payload whose
/// length is right, a little off, or random.
fn idx_file() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            6 => prop::sample::select(vec![0x08u8, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]),
            1 => any::<u8>(),
        ],
        prop::collection::vec(idx_dim(), 0..5),
        prop_oneof![Just(0u8), Just(0u8), any::<u8>()],
        -3i64..3,
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(code, dims, first, delta, noise)| {
            let mut bytes = vec![first, 0, code, dims.len() as u8];
            for d in &dims {
                bytes.extend_from_slice(&d.to_be_bytes());
            }
            let size = match code {
                0x08 | 0x09 => 1,
                0x0B => 2,
                0x0C | 0x0D => 4,
                _ => 8,
            };
            let n = dims
                .iter()
                .try_fold(size as u64, |a, &d| a.checked_mul(u64::from(d)));
            match n {
                Some(n) if n <= 4096 => {
                    let len = (n as i64 + delta).max(0) as usize;
                    bytes.extend((0..len).map(|i| noise.get(i % 64).copied().unwrap_or(7)));
                }
                _ => bytes.extend_from_slice(&noise),
            }
            bytes
        })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Mutations of a byte string: flips, overwrites, truncation, insertion, duplication.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Flip(i, b) if len > 0 => bytes[i % len] ^= b,
            Mutation::Set(i, b) if len > 0 => bytes[i % len] = *b,
            Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
            Mutation::Insert(i, b) => {
                let at = i % (len + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Duplicate(i, n) if len > 0 => {
                let at = i % len;
                let chunk: Vec<u8> = bytes[at..(at + n).min(len)].to_vec();
                bytes.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    bytes
}

fn check_idx(bytes: &[u8]) {
    let (result, peak) = peak_during(|| parse_idx(bytes, "fuzz"));
    let bound = if bytes.starts_with(&[0x1f, 0x8b]) {
        4 * 1032 * bytes.len() + (1 << 20)
    } else {
        4 * bytes.len() + (64 << 10)
    };
    assert!(
        peak <= bound,
        "parse_idx of {} bytes peaked at {peak} bytes (bound {bound})",
        bytes.len()
    );
    if let Ok(a) = result {
        let n: usize = a.dims.iter().product();
        assert_eq!(a.to_f32().len(), n);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn idx_structured(file in idx_file(), compress in any::<bool>()) {
        let bytes = if compress { gzip(&file) } else { file };
        check_idx(&bytes);
    }

    #[test]
    fn idx_mutated(
        file in idx_file(),
        compress in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let bytes = if compress { gzip(&file) } else { file };
        check_idx(&mutate(bytes, &mutations));
    }

    #[test]
    fn idx_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256), gz in any::<bool>()) {
        let mut bytes = bytes;
        if gz {
            bytes.splice(0..0, [0x1f, 0x8b, 0x08, 0x00]);
        }
        check_idx(&bytes);
    }
}

// ---------------------------------------------------------------- CSV

/// Pieces CSV text is made of, and some it should not hold.
const CSV_PIECES: &[&str] = &[
    "0",
    "1",
    "2",
    "7",
    "-1",
    "0.5",
    "1e3",
    "1e999",
    "-0",
    "NaN",
    "inf",
    "3.0",
    "2.5",
    "x",
    "label",
    "a b",
    ",",
    ",",
    ",",
    ";",
    "\t",
    "\n",
    "\n",
    "\r\n",
    "\r",
    "\"",
    "\"\"",
    " ",
    "\u{feff}",
    "é",
    "99999999999999999999",
];

fn csv_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(CSV_PIECES), 0..80).prop_map(|p| p.concat())
}

/// A well-formed CSV: a header (sometimes), then rows of numbers.
fn valid_csv() -> impl Strategy<Value = String> {
    (1usize..5, 1usize..8, any::<bool>(), any::<u64>()).prop_map(|(cols, rows, header, seed)| {
        let mut s = String::new();
        if header {
            let names: Vec<String> = (0..cols).map(|c| format!("c{c}")).collect();
            s += &names.join(",");
            s.push('\n');
        }
        for r in 0..rows {
            let row: Vec<String> = (0..cols)
                .map(|c| ((seed >> ((r + c) % 60)) % 5).to_string())
                .collect();
            s += &row.join(",");
            s.push('\n');
        }
        s
    })
}

fn csv_options() -> impl Strategy<Value = CsvOptions> {
    (
        prop::sample::select(vec![',', ',', ';', '\t', '"', '\n', 'x']),
        prop::sample::select(vec![Header::Auto, Header::Present, Header::Absent]),
        prop_oneof![
            3 => Just(LabelColumn::Index(-1)),
            2 => (-6isize..6).prop_map(LabelColumn::Index),
            1 => Just(LabelColumn::Index(isize::MIN)),
            1 => Just(LabelColumn::Index(isize::MAX)),
            1 => prop::sample::select(vec!["c0", "c1", "label", ""])
                .prop_map(|n| LabelColumn::Name(n.to_string())),
        ],
        prop::sample::select(vec![Labels::Classes, Labels::Targets]),
    )
        .prop_map(|(delimiter, header, label, labels)| CsvOptions {
            delimiter,
            header,
            label,
            labels,
        })
}

fn check_csv(text: &str, options: &CsvOptions) {
    let (result, peak) = peak_during(|| parse_csv(text, options));
    let bound = 48 * text.len() + (64 << 10);
    assert!(
        peak <= bound,
        "parse_csv of {} bytes peaked at {peak} bytes (bound {bound})",
        text.len()
    );
    if let Ok(d) = result {
        assert!(!d.is_empty());
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn csv_structured(text in csv_text(), options in csv_options()) {
        check_csv(&text, &options);
    }

    #[test]
    fn csv_mutated(
        text in valid_csv(),
        options in csv_options(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let bytes = mutate(text.into_bytes(), &mutations);
        let text = String::from_utf8_lossy(&bytes);
        check_csv(&text, &options);
    }
}

// ---------------------------------------------------------------- checkpoints

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-parsers");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!(
        "{name}-{:?}.safetensors",
        std::thread::current().id()
    ))
}

fn tiny() -> Sequential {
    Sequential::new(&[3]).add(Layer::dense(2, Activation::Softmax))
}

/// A valid weights file and a valid training checkpoint of `tiny()`.
fn valid_checkpoints() -> &'static [Vec<u8>; 2] {
    static FILES: std::sync::OnceLock<[Vec<u8>; 2]> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        let mut model = Model::new(tiny(), 0).unwrap();
        let weights = scratch("valid-weights");
        model.save(&weights).unwrap();
        let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
        model.compile(Adam::default(), loss, &[]).unwrap();
        let training = scratch("valid-training");
        model.save_checkpoint(&training).unwrap();
        [
            std::fs::read(weights).unwrap(),
            std::fs::read(training).unwrap(),
        ]
    })
}

/// A safetensors file with a header built from random pieces.
fn structured_checkpoint() -> impl Strategy<Value = Vec<u8>> {
    let dim = prop_oneof![0u64..4, Just(u64::MAX), Just(1 << 40), any::<u64>()];
    (
        prop::sample::select(vec!["F32", "I32", "F64", "U8", "BOOL", "X"]),
        prop::collection::vec(dim, 0..4),
        (0u64..64, prop_oneof![0u64..64, Just(u64::MAX), any::<u64>()]),
        prop::sample::select(vec!["dense_1/kernel", "dense_1/bias", "__metadata__", ""]),
        prop::collection::vec(any::<u8>(), 0..64),
        prop_oneof![Just(None), any::<u64>().prop_map(Some)],
    )
        .prop_map(|(dtype, shape, (start, end), name, data, length)| {
            let shape: Vec<String> = shape.iter().map(u64::to_string).collect();
            let header = format!(
                "{{\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{start},{end}]}},\
                 \"__metadata__\":{{\"kiln.version\":\"1\",\"kiln.contents\":\"weights\"}}}}",
                shape.join(",")
            );
            let len = length.unwrap_or(header.len() as u64);
            let mut bytes = len.to_le_bytes().to_vec();
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(&data);
            bytes
        })
}

fn check_checkpoint(bytes: &[u8]) {
    let path = scratch("fuzz");
    std::fs::write(&path, bytes).unwrap();
    let mut model = Model::new(tiny(), 1).unwrap();
    let before: Vec<Vec<u32>> = model
        .weights()
        .unwrap()
        .iter()
        .map(|(_, t)| t.to_bits())
        .collect();
    let (result, peak) = peak_during(|| model.load(&path));
    let bound = 8 * bytes.len() + (256 << 10);
    assert!(
        peak <= bound,
        "Model::load of {} bytes peaked at {peak} bytes (bound {bound})",
        bytes.len()
    );
    if result.is_err() {
        let after: Vec<Vec<u32>> = model
            .weights()
            .unwrap()
            .iter()
            .map(|(_, t)| t.to_bits())
            .collect();
        assert_eq!(before, after, "a failed load changes nothing");
    }
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Sgd::default(), loss, &[]).unwrap();
    let _ = model.load_checkpoint(&path);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn checkpoint_mutated(
        which in 0usize..2,
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        check_checkpoint(&mutate(valid_checkpoints()[which].clone(), &mutations));
    }

    #[test]
    fn checkpoint_structured(bytes in structured_checkpoint()) {
        check_checkpoint(&bytes);
    }

    #[test]
    fn checkpoint_header_length(which in 0usize..2, len in any::<u64>()) {
        let mut bytes = valid_checkpoints()[which].clone();
        bytes[..8].copy_from_slice(&len.to_le_bytes());
        check_checkpoint(&bytes);
    }
}

/// The measurement itself works: a parser that allocated its header's claim would be caught.
#[test]
fn the_counting_allocator_sees_large_allocations() {
    let (v, peak) = peak_during(|| vec![0u8; 1 << 20]);
    assert!(peak >= 1 << 20, "{peak}");
    drop(v);
    // The issue's reproducer in small: a header claiming 2 GiB in a few bytes of gzip.
    let mut file = vec![0, 0, 0x08, 2];
    file.extend_from_slice(&2_097_152u32.to_be_bytes());
    file.extend_from_slice(&1024u32.to_be_bytes());
    file.extend_from_slice(&[0; 4096]);
    let bytes = gzip(&file);
    let (result, peak) = peak_during(|| parse_idx(&bytes, "bomb"));
    assert!(matches!(result, Err(Error::TooLarge { .. })), "{result:?}");
    assert!(peak < 1 << 20, "{peak}");
}
