//! The data module: IDX reading (shipped digits, every element type, malformed input) and
//! datasets (validation, batching, shuffling, validation split).

use flate2::write::GzEncoder;
use flate2::Compression;
use kiln_compiler::DType;
use kiln_runtime::data::{idx_dir, parse_idx, read_idx, Dataset, IdxArray, IdxData};
use kiln_runtime::{Error, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- helpers

/// An IDX file: magic `00 00 code ndim`, big-endian u32 dims, then `payload` as given.
fn idx_bytes(code: u8, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// The IDX encoding of an array (the writer the reader is checked against).
fn write_idx(array: &IdxArray) -> Vec<u8> {
    let dims: Vec<u32> = array.dims.iter().map(|&d| d as u32).collect();
    let (code, payload): (u8, Vec<u8>) = match &array.data {
        IdxData::U8(v) => (0x08, v.clone()),
        IdxData::I8(v) => (0x09, v.iter().map(|&x| x as u8).collect()),
        IdxData::I16(v) => (0x0B, v.iter().flat_map(|x| x.to_be_bytes()).collect()),
        IdxData::I32(v) => (0x0C, v.iter().flat_map(|x| x.to_be_bytes()).collect()),
        IdxData::F32(v) => (0x0D, v.iter().flat_map(|x| x.to_be_bytes()).collect()),
        IdxData::F64(v) => (0x0E, v.iter().flat_map(|x| x.to_be_bytes()).collect()),
    };
    idx_bytes(code, &dims, &payload)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
    out
}

/// A fresh empty directory for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("data-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn digits_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/digits")
}

/// The `message` of an `Error::Format`, failing the test for anything else.
fn format_message(result: kiln_runtime::Result<IdxArray>) -> String {
    match result {
        Err(Error::Format { what, message }) => {
            assert_eq!(what, "test input");
            message
        }
        other => panic!("expected Error::Format, got {other:?}"),
    }
}

fn data_message<T: std::fmt::Debug>(result: kiln_runtime::Result<T>) -> String {
    match result {
        Err(Error::Data(message)) => message,
        other => panic!("expected Error::Data, got {other:?}"),
    }
}

/// Features `[n, 2]` with row i = (i, -i) and labels i % classes: each sample names itself.
fn numbered(n: usize, classes: i32) -> Dataset {
    let features: Vec<f32> = (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect();
    let labels: Vec<i32> = (0..n as i32).map(|i| i % classes).collect();
    Dataset::from_slices(&features, &[2], &labels).unwrap()
}

/// The sample ids of a dataset or batch made by [`numbered`], checking its rows are consistent.
fn ids(features: &Tensor) -> Vec<usize> {
    let v = features.as_f32().unwrap();
    v.chunks(2)
        .map(|row| {
            assert_eq!(row[1], -row[0], "a row was torn");
            row[0] as usize
        })
        .collect()
}

// ---------------------------------------------------------------- the shipped digits

#[test]
fn shipped_digits_load_with_known_contents() {
    let (train, test) = idx_dir(digits_dir()).unwrap();
    assert_eq!((train.len(), test.len()), (1437, 360));
    assert_eq!(train.item_shape(), &[64]);
    assert_eq!(test.item_shape(), &[64]);
    assert_eq!(train.features().shape(), &[1437, 64]);
    assert_eq!(train.labels().shape(), &[1437]);
    assert_eq!(
        (train.num_classes(), test.num_classes()),
        (Some(10), Some(10))
    );

    // Values from decoding the files independently (Python's gzip module).
    let labels = train.labels().as_i32().unwrap();
    assert_eq!(&labels[..10], &[3, 9, 1, 3, 1, 9, 4, 4, 2, 8]);
    let counts: Vec<usize> = (0..10)
        .map(|c| labels.iter().filter(|&&l| l == c).count())
        .collect();
    assert_eq!(counts, [142, 146, 142, 146, 145, 145, 145, 143, 139, 144]);
    assert_eq!(
        &test.labels().as_i32().unwrap()[..10],
        &[7, 6, 3, 7, 7, 3, 2, 8, 9, 3]
    );

    let pixels = train.features().as_f32().unwrap();
    let first: Vec<f32> = [0u8, 0, 128, 255, 255, 191, 0, 0, 0, 0, 223, 191]
        .iter()
        .map(|&p| p as f32 / 255.0)
        .collect();
    assert_eq!(&pixels[..12], &first[..]);
    let (min, max) = pixels
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    assert_eq!((min, max), (0.0, 1.0));
    let sum: f64 = pixels.iter().map(|&p| p as f64).sum();
    assert!((sum * 255.0 - 7_162_982.0).abs() < 0.5, "pixel sum {sum}");
    let test_sum: f64 = test.features().to_f64().iter().sum();
    assert!(
        (test_sum * 255.0 - 1_790_819.0).abs() < 0.5,
        "pixel sum {test_sum}"
    );
}

#[test]
fn shipped_digits_raw_idx_files() {
    let images = read_idx(digits_dir().join("train-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(images.dims, [1437, 8, 8]);
    assert!(matches!(images.data, IdxData::U8(ref v) if v.len() == 1437 * 64));
    let labels = read_idx(digits_dir().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(labels.dims, [360]);
    assert_eq!(&labels.to_i32_labels().unwrap()[..4], &[7, 6, 3, 7]);
}

#[test]
fn idx_dir_reads_uncompressed_files_identically() {
    let dir = scratch_dir("uncompressed");
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let gz = std::fs::read(digits_dir().join(format!("{name}.gz"))).unwrap();
        std::fs::write(dir.join(name), gunzip(&gz)).unwrap();
    }
    let (train, test) = idx_dir(&dir).unwrap();
    let (gz_train, gz_test) = idx_dir(digits_dir()).unwrap();
    assert_eq!(train.features(), gz_train.features());
    assert_eq!(train.labels(), gz_train.labels());
    assert_eq!(test.features(), gz_test.features());
    assert_eq!(test.labels(), gz_test.labels());
}

#[test]
fn idx_dir_errors() {
    let missing = idx_dir(scratch_dir("missing"));
    match missing {
        Err(Error::Io { path, source }) => {
            assert!(path.ends_with("train-images-idx3-ubyte[.gz]"), "{path}");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }

    // 3 images but 2 labels.
    let dir = scratch_dir("mismatch");
    for prefix in ["train", "t10k"] {
        let images = idx_bytes(0x08, &[3, 2, 2], &[7; 12]);
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        let labels = idx_bytes(0x08, &[2], &[0, 1]);
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
    let message = data_message(idx_dir(&dir));
    assert!(
        message.contains("3 images") && message.contains("2 labels"),
        "{message}"
    );

    // Floating-point labels are not class labels.
    let labels = idx_bytes(0x0D, &[3], &[0; 12]);
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
    match idx_dir(&dir) {
        Err(Error::Format { what, message }) => {
            assert!(what.ends_with("train-labels-idx1-ubyte"), "{what}");
            assert!(message.contains("f32 [3]"), "{message}");
        }
        other => panic!("expected Error::Format, got {other:?}"),
    }
}

// ---------------------------------------------------------------- IDX round trips

fn every_type() -> Vec<IdxArray> {
    vec![
        IdxArray {
            dims: vec![2, 3],
            data: IdxData::U8(vec![0, 1, 127, 128, 254, 255]),
        },
        IdxArray {
            dims: vec![5],
            data: IdxData::I8(vec![-128, -1, 0, 1, 127]),
        },
        IdxArray {
            dims: vec![1, 2, 2],
            data: IdxData::I16(vec![i16::MIN, -2, 0x0102, i16::MAX]),
        },
        IdxArray {
            dims: vec![4, 1],
            data: IdxData::I32(vec![i32::MIN, -7, 0x0102_0304, i32::MAX]),
        },
        IdxArray {
            dims: vec![3],
            data: IdxData::F32(vec![-1.5, f32::MIN_POSITIVE / 2.0, f32::INFINITY]),
        },
        IdxArray {
            dims: vec![2, 1, 1, 1],
            data: IdxData::F64(vec![std::f64::consts::PI, -0.0]),
        },
        IdxArray {
            dims: vec![0, 28, 28],
            data: IdxData::U8(vec![]),
        },
    ]
}

#[test]
fn every_element_type_round_trips_raw_and_gzip() {
    let dir = scratch_dir("round-trip");
    for (i, array) in every_type().into_iter().enumerate() {
        let raw = write_idx(&array);
        assert_eq!(parse_idx(&raw, "raw").unwrap(), array);
        assert_eq!(parse_idx(&gzip(&raw), "gzip").unwrap(), array);
        // Detection is by content, not by name: a gzip file without `.gz` and vice versa.
        let (plain_name, gz_name) = (dir.join(format!("{i}.gz")), dir.join(format!("{i}")));
        std::fs::write(&plain_name, &raw).unwrap();
        std::fs::write(&gz_name, gzip(&raw)).unwrap();
        assert_eq!(read_idx(&plain_name).unwrap(), array);
        assert_eq!(read_idx(&gz_name).unwrap(), array);
    }
    // Exact byte order: 0x0102 and 0x01020304 are big-endian on disk.
    let raw = write_idx(&every_type()[2]);
    assert_eq!(&raw[16..], &[0x80, 0, 0xFF, 0xFE, 1, 2, 0x7F, 0xFF]);
}

#[test]
fn concatenated_gzip_members_are_one_stream() {
    let raw = write_idx(&every_type()[0]);
    let (head, tail) = raw.split_at(9);
    let mut two = gzip(head);
    two.extend(gzip(tail));
    assert_eq!(parse_idx(&two, "two members").unwrap(), every_type()[0]);
}

#[test]
fn conversions() {
    let types = every_type();
    assert_eq!(types[1].to_f32(), [-128.0, -1.0, 0.0, 1.0, 127.0]);
    assert_eq!(types[5].to_f32(), [std::f32::consts::PI, -0.0]);
    assert_eq!(
        types[3].to_i32_labels().unwrap(),
        [i32::MIN, -7, 0x0102_0304, i32::MAX]
    );
    assert_eq!(types[2].to_i32_labels().unwrap(), [-32768, -2, 258, 32767]);
    assert_eq!(
        types[0].to_i32_labels().unwrap(),
        [0, 1, 127, 128, 254, 255]
    );
    assert!(matches!(
        types[4].to_i32_labels(),
        Err(Error::DType { ref found, .. }) if found == "f32"
    ));
    let unit = IdxArray {
        dims: vec![3],
        data: IdxData::U8(vec![0, 51, 255]),
    };
    assert_eq!(unit.to_unit_f32().unwrap(), [0.0, 0.2, 1.0]);
    assert!(matches!(types[1].to_unit_f32(), Err(Error::DType { .. })));
}

// ---------------------------------------------------------------- malformed IDX

#[test]
fn malformed_headers_are_errors() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "only 0 bytes"),
        ("short magic", vec![0, 0, 8], "only 3 bytes"),
        (
            "little-endian magic",
            vec![1, 8, 0, 0, 1, 0, 0, 0, 0],
            "bad magic number 0x01080000",
        ),
        (
            "nonzero first bytes",
            {
                let mut b = idx_bytes(0x08, &[1], &[0]);
                b[1] = 1;
                b
            },
            "bad magic number 0x00010801",
        ),
        (
            "unknown type",
            idx_bytes(0x0A, &[1], &[0]),
            "unknown element type code 0x0a",
        ),
        ("zero ndim", vec![0, 0, 8, 0], "0 dimensions"),
        (
            "truncated dims",
            vec![0, 0, 8, 2, 0, 0, 0, 1, 0, 0],
            "only 6 bytes follow",
        ),
        (
            "dims overflow",
            idx_bytes(0x0C, &[u32::MAX, u32::MAX, u32::MAX], &[]),
            "overflow",
        ),
        (
            "huge dims, tiny file",
            idx_bytes(0x08, &[u32::MAX, u32::MAX], &[1, 2, 3]),
            "need 18446744065119617025 data bytes, found 3",
        ),
        (
            "truncated data",
            idx_bytes(0x0B, &[3], &[0; 5]),
            "need 6 data bytes, found 5",
        ),
        (
            "trailing bytes",
            idx_bytes(0x0B, &[3], &[0; 7]),
            "1 trailing bytes",
        ),
    ];
    for (name, bytes, expected) in cases {
        let message = format_message(parse_idx(&bytes, "test input"));
        assert!(message.contains(expected), "{name}: {message}");
        // The same bytes compressed give the same diagnosis, except a claim beyond the
        // decoded-size limit, refused from the header alone (issue 17).
        let result = parse_idx(&gzip(&bytes), "test input");
        if name == "huge dims, tiny file" {
            assert!(
                matches!(result, Err(Error::TooLarge { .. })),
                "{name} (gzip): {result:?}"
            );
            continue;
        }
        let message = format_message(result);
        assert!(message.contains(expected), "{name} (gzip): {message}");
    }
}

#[test]
fn corrupt_gzip_is_an_error() {
    let raw = write_idx(&IdxArray {
        dims: vec![40, 7],
        data: IdxData::I16((0..280).collect()),
    });
    let gz = gzip(&raw);
    // Every truncation of the compressed stream, including ones that only cut the CRC trailer.
    for len in 0..gz.len() {
        let result = parse_idx(&gz[..len], "test input");
        assert!(
            result.is_err(),
            "truncated to {len} of {} bytes: {result:?}",
            gz.len()
        );
    }
    let message = format_message(parse_idx(&gz[..gz.len() - 4], "test input"));
    assert!(message.contains("gzip"), "{message}");
    // A wrong CRC.
    let mut bad_crc = gz.clone();
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 1;
    assert!(format_message(parse_idx(&bad_crc, "test input")).contains("corrupt gzip"));
    // Garbage after the gzip magic.
    let garbage = [
        0x1f, 0x8b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    assert!(format_message(parse_idx(&garbage, "test input")).contains("corrupt gzip"));
}

#[test]
fn huge_dims_in_a_tiny_gzip_file_are_an_error() {
    // Refused from the header alone (issue 17: the claim exceeds the decoded-size limit).
    let gz = gzip(&idx_bytes(0x0E, &[u32::MAX, 1 << 20], &[0; 64]));
    let e = parse_idx(&gz, "test input").unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    // A claim within the limit that the stream does not hold is a format error.
    let gz = gzip(&idx_bytes(0x0E, &[1 << 10, 1 << 10], &[0; 64]));
    let message = format_message(parse_idx(&gz, "test input"));
    assert!(message.contains("found 64"), "{message}");
}

#[test]
fn random_corruption_never_panics() {
    let raw = write_idx(&IdxArray {
        dims: vec![3, 4],
        data: IdxData::F32((0..12).map(|i| i as f32).collect()),
    });
    let gz = gzip(&raw);
    let mut rng = StdRng::seed_from_u64(7);
    let mut errors = 0;
    for _ in 0..2000 {
        for original in [&raw, &gz] {
            let mut bytes = original.clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = rng.gen();
            }
            let cut = rng.gen_range(0..=bytes.len());
            if parse_idx(&bytes[..cut], "test input").is_err() {
                errors += 1;
            }
        }
    }
    // Nearly every mutation is caught (those only in raw f32 data bytes are valid files).
    assert!(errors > 3000, "{errors} of 4000 corruptions detected");
}

#[test]
fn read_idx_missing_file_is_an_io_error() {
    let path = scratch_dir("no-file").join("absent.idx");
    match read_idx(&path) {
        Err(Error::Io { path: p, source }) => {
            assert_eq!(p, path.display().to_string());
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

#[test]
fn read_idx_names_the_file() {
    let path = scratch_dir("named").join("bad-magic");
    std::fs::write(&path, [1, 2, 3, 4]).unwrap();
    match read_idx(&path) {
        Err(Error::Format { what, .. }) => assert_eq!(what, format!("IDX file {}", path.display())),
        other => panic!("expected Error::Format, got {other:?}"),
    }
}

// ---------------------------------------------------------------- dataset validation

#[test]
fn a_dataset_holds_one_feature_tensor_per_input_and_batches_them_together() {
    let a = Tensor::from_f32(&[4, 2], (0..8).map(|v| v as f32).collect()).unwrap();
    let b = Tensor::from_f32(&[4, 1], vec![10.0, 11.0, 12.0, 13.0]).unwrap();
    let labels = Tensor::from_i32(&[4], vec![0, 1, 0, 1]).unwrap();
    let d = Dataset::with_inputs(vec![a.clone(), b.clone()], labels.clone()).unwrap();
    assert_eq!(d.inputs(), &[a.clone(), b.clone()]);
    assert_eq!((d.len(), d.features()), (4, &a));
    // Shuffled batches keep each sample's inputs and label together.
    for batch in d.batches(3, Some(7)).unwrap() {
        let (xa, xb) = (
            batch.inputs[0].as_f32().unwrap(),
            batch.inputs[1].as_f32().unwrap(),
        );
        for (i, &label) in batch.labels.as_i32().unwrap().iter().enumerate() {
            let sample = (xb[i] - 10.0) as usize;
            assert_eq!(xa[2 * i], 2.0 * sample as f32);
            assert_eq!(label, (sample % 2) as i32);
        }
    }
    let (head, tail) = d.split_at(1).unwrap();
    assert_eq!(head.inputs()[1].as_f32().unwrap(), &[10.0]);
    assert_eq!(tail.inputs()[1].shape(), &[3, 1]);

    let m = data_message(Dataset::with_inputs(Vec::new(), labels.clone()));
    assert!(m.contains("at least one input"), "{m}");
    let short = Tensor::from_f32(&[3, 1], vec![0.0; 3]).unwrap();
    let m = data_message(Dataset::with_inputs(vec![a.clone(), short], labels.clone()));
    assert!(m.contains("features of input 1 of shape [3, 1]"), "{m}");
    let nan = Tensor::from_f32(&[4, 1], vec![0.0, f32::NAN, 0.0, 0.0]).unwrap();
    let m = data_message(Dataset::with_inputs(vec![a, nan], labels));
    assert!(
        m.contains("features of input 1 hold NaN at sample 1"),
        "{m}"
    );
}

#[test]
fn dataset_accessors() {
    let d = numbered(5, 3);
    assert_eq!((d.len(), d.is_empty()), (5, false));
    assert_eq!(d.item_shape(), &[2]);
    assert_eq!(d.num_classes(), Some(3));
    assert_eq!(d.labels().as_i32().unwrap(), &[0, 1, 2, 0, 1]);
    assert_eq!(
        &d.features().as_f32().unwrap()[..4],
        &[0.0, -0.0, 1.0, -1.0]
    );

    let regression = Dataset::new(
        Tensor::from_f32(&[2, 3], vec![0.0; 6]).unwrap(),
        Tensor::from_f32(&[2, 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap(),
    )
    .unwrap();
    assert_eq!(regression.num_classes(), None);
    assert_eq!(regression.item_shape(), &[3]);
}

#[test]
fn dataset_validation_errors() {
    let m = data_message(Dataset::from_slices(&[], &[4], &[]));
    assert!(m.contains("empty dataset"), "{m}");

    let m = data_message(Dataset::new(
        Tensor::from_f32(&[3, 2], vec![0.0; 6]).unwrap(),
        Tensor::from_i32(&[2], vec![0, 1]).unwrap(),
    ));
    assert!(
        m.contains("features of shape [3, 2] do not hold the 2 samples the labels [2] hold"),
        "{m}"
    );

    let m = data_message(Dataset::from_slices(&[0.0; 7], &[2], &[0, 1, 2, 3]));
    assert!(
        m.contains("7 feature values do not form 4 samples of shape [2]"),
        "{m}"
    );

    let mut features = vec![0.5; 12];
    features[7] = f32::NAN;
    let m = data_message(Dataset::from_slices(&features, &[2, 2], &[0, 1, 2]));
    assert!(
        m.contains("features hold NaN at sample 1, element [1, 1] (flat index 7)"),
        "{m}"
    );

    let m = data_message(Dataset::new(
        Tensor::from_f32(&[2, 1], vec![0.0, 1.0]).unwrap(),
        Tensor::from_f32(&[2, 2], vec![0.0, 1.0, f32::NEG_INFINITY, 0.0]).unwrap(),
    ));
    assert!(
        m.contains("labels hold -inf at sample 1, element [0]"),
        "{m}"
    );

    let m = data_message(Dataset::from_slices(&[0.0; 3], &[1], &[0, -1, 2]));
    assert!(m.contains("class label -1 of sample 1 is negative"), "{m}");

    // Per-token class labels [N, T] are checked per sample too.
    let m = data_message(Dataset::new(
        Tensor::from_f32(&[2, 1], vec![0.0, 1.0]).unwrap(),
        Tensor::from_i32(&[2, 3], vec![0, 1, 2, 3, -4, 5]).unwrap(),
    ));
    assert!(m.contains("class label -4 of sample 1 is negative"), "{m}");

    let m = data_message(Dataset::from_slices(&[], &[0], &[1, 2]));
    assert!(m.contains("no values per sample"), "{m}");

    let m = data_message(Dataset::new(
        Tensor::scalar(1.0),
        Tensor::from_i32(&[1], vec![0]).unwrap(),
    ));
    assert!(m.contains("leading sample dimension"), "{m}");

    // i32 features are token ids (checked against the model's inputs when it runs).
    let tokens = Dataset::new(
        Tensor::from_i32(&[1, 1], vec![3]).unwrap(),
        Tensor::from_i32(&[1], vec![0]).unwrap(),
    );
    assert_eq!(tokens.unwrap().features().dtype(), DType::I32);
}

// ---------------------------------------------------------------- batching

#[test]
fn batches_cover_every_sample_once_including_the_partial_last() {
    let d = numbered(10, 3);
    for shuffle in [None, Some(0), Some(42)] {
        let batches = d.batches(4, shuffle).unwrap();
        assert_eq!(batches.len(), 3);
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        for b in batches {
            assert_eq!(b.inputs[0].shape()[1..], [2]);
            assert_eq!(b.labels.shape(), &[b.inputs[0].shape()[0]]);
            let batch_ids = ids(&b.inputs[0]);
            let expected_labels: Vec<i32> = batch_ids.iter().map(|&i| i as i32 % 3).collect();
            assert_eq!(b.labels.as_i32().unwrap(), &expected_labels[..]);
            sizes.push(batch_ids.len());
            seen.extend(batch_ids);
        }
        assert_eq!(sizes, [4, 4, 2]);
        if shuffle.is_none() {
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>(), "shuffle {shuffle:?}");
    }
    // A batch larger than the dataset is the whole dataset; batch size 1 is every sample.
    assert_eq!(
        d.batches(64, None)
            .unwrap()
            .map(|b| ids(&b.inputs[0]))
            .collect::<Vec<_>>(),
        [(0..10).collect::<Vec<_>>()]
    );
    assert_eq!(d.batches(1, Some(3)).unwrap().count(), 10);
    assert_eq!(d.batches(5, None).unwrap().len(), 2);
    assert!(matches!(d.batches(0, None), Err(Error::InvalidArgument(_))));
}

#[test]
fn batches_gather_multi_dimensional_f32_targets() {
    let features: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let targets: Vec<f32> = (0..6).map(|i| 100.0 + i as f32).collect();
    let d = Dataset::new(
        Tensor::from_f32(&[3, 2, 2], features).unwrap(),
        Tensor::from_f32(&[3, 2], targets).unwrap(),
    )
    .unwrap();
    let mut it = d.batches(2, None).unwrap();
    let first = it.next().unwrap();
    assert_eq!(first.inputs[0].shape(), &[2, 2, 2]);
    assert_eq!(first.labels.shape(), &[2, 2]);
    assert_eq!(
        first.labels.as_f32().unwrap(),
        &[100.0, 101.0, 102.0, 103.0]
    );
    let last = it.next().unwrap();
    assert_eq!(last.inputs[0].as_f32().unwrap(), &[8.0, 9.0, 10.0, 11.0]);
    assert_eq!(last.labels.as_f32().unwrap(), &[104.0, 105.0]);
    assert!(it.next().is_none());
}

#[test]
fn shuffle_is_deterministic_per_seed_and_differs_across_seeds() {
    let d = numbered(100, 10);
    let order = |seed| -> Vec<usize> {
        d.batches(32, Some(seed))
            .unwrap()
            .flat_map(|b| ids(&b.inputs[0]))
            .collect()
    };
    let (a, a_again, b) = (order(1), order(1), order(2));
    assert_eq!(a, a_again);
    assert_ne!(a, b);
    assert_ne!(a, (0..100).collect::<Vec<_>>());
}

// ---------------------------------------------------------------- splits

#[test]
fn validation_split_takes_the_last_fraction_in_order() {
    let d = numbered(10, 4);
    let (train, val) = d.split_fraction(0.2).unwrap();
    assert_eq!(ids(train.features()), (0..8).collect::<Vec<_>>());
    assert_eq!(ids(val.features()), [8, 9]);
    assert_eq!(val.labels().as_i32().unwrap(), &[0, 1]);
    assert_eq!((train.num_classes(), val.num_classes()), (Some(4), Some(2)));

    // Keras: training gets floor(N * (1 - split)) samples.
    let (train, val) = d.split_fraction(0.25).unwrap();
    assert_eq!((train.len(), val.len()), (7, 3));
    let (train, val) = d.split_fraction(0.7).unwrap();
    assert_eq!((train.len(), val.len()), (3, 7));
    // As in Keras, 10 * (1 - 0.9) rounds to 0.999…, so training would be empty.
    assert!(matches!(
        d.split_fraction(0.9),
        Err(Error::InvalidArgument(_))
    ));
    for bad in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
        assert!(
            matches!(d.split_fraction(bad), Err(Error::InvalidArgument(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        numbered(1, 1).split_fraction(0.5),
        Err(Error::InvalidArgument(_))
    ));

    let (head, tail) = d.split_at(3).unwrap();
    assert_eq!(ids(head.features()), [0, 1, 2]);
    assert_eq!(ids(tail.features()), (3..10).collect::<Vec<_>>());
    for bad in [0, 10, 11] {
        assert!(
            matches!(d.split_at(bad), Err(Error::InvalidArgument(_))),
            "{bad}"
        );
    }
}
