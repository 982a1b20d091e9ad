//! The CSV reader: headers (detected, explicit, quoted), label columns by name and by index,
//! delimiters, class labels and float targets, and an error naming the line and column for
//! every kind of bad input.

use kiln_runtime::data::{parse_csv, read_csv, CsvOptions, Header, LabelColumn, Labels};
use kiln_runtime::{Dataset, Error};
use std::path::{Path, PathBuf};

fn parse(text: &str) -> Dataset {
    parse_csv(text, &CsvOptions::default()).unwrap()
}

fn with(options: impl FnOnce(&mut CsvOptions)) -> CsvOptions {
    let mut o = CsvOptions::default();
    options(&mut o);
    o
}

fn by_name(name: &str) -> CsvOptions {
    with(|o| o.label = LabelColumn::Name(name.into()))
}

fn features(d: &Dataset) -> (&[usize], &[f32]) {
    (d.features().shape(), d.features().as_f32().unwrap())
}

fn classes(d: &Dataset) -> &[i32] {
    d.labels().as_i32().unwrap()
}

/// The message of an `Error::Data`, failing the test for anything else.
fn data_error(text: &str, options: &CsvOptions) -> String {
    match parse_csv(text, options) {
        Err(Error::Data(message)) => message,
        other => panic!("expected Error::Data for {text:?}, got {other:?}"),
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("csv");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn a_header_is_detected_and_the_last_column_is_the_label_by_default() {
    let d = parse("x1,x2,label\n0.5,-1,2\n1e-3, 4 ,0\n");
    assert_eq!(features(&d), (&[2, 2][..], &[0.5, -1.0, 1e-3, 4.0][..]));
    assert_eq!(classes(&d), &[2, 0]);
    assert_eq!(d.num_classes(), Some(3));

    let d = parse("0.5,-1,2\n1,4,0\n");
    assert_eq!(d.len(), 2, "a numeric first row is data");
    assert_eq!(classes(&d), &[2, 0]);
}

#[test]
fn explicit_header_settings_override_detection() {
    let present = with(|o| o.header = Header::Present);
    let d = parse_csv("1,2,3\n4,5,6\n", &present).unwrap();
    assert_eq!(features(&d), (&[1, 2][..], &[4.0, 5.0][..]));
    assert_eq!(classes(&d), &[6]);

    let absent = with(|o| o.header = Header::Absent);
    let e = data_error("a,b,c\n1,2,3\n", &absent);
    assert!(e.contains("line 1, column 1") && e.contains("`a`"), "{e}");
}

#[test]
fn label_columns_by_name_by_index_and_from_the_end() {
    let text = "id,label,size\n1,3,0.25\n2,1,0.5\n";
    for options in [
        by_name("label"),
        with(|o| o.label = LabelColumn::Index(1)),
        with(|o| o.label = LabelColumn::Index(-2)),
    ] {
        let d = parse_csv(text, &options).unwrap();
        assert_eq!(classes(&d), &[3, 1], "{options:?}");
        assert_eq!(features(&d), (&[2, 2][..], &[1.0, 0.25, 2.0, 0.5][..]));
    }
    let first = parse_csv(text, &with(|o| o.label = LabelColumn::Index(0))).unwrap();
    assert_eq!(classes(&first), &[1, 2]);
}

#[test]
fn delimiters_quotes_bom_crlf_and_blank_lines() {
    let tabs = with(|o| o.delimiter = '\t');
    let d = parse_csv("a\tb\n1\t2\n", &tabs).unwrap();
    assert_eq!((features(&d).1, classes(&d)), (&[1.0][..], &[2][..]));

    let semicolons = with(|o| {
        o.delimiter = ';';
        o.label = LabelColumn::Name("class \"id\"".into());
    });
    let text = "\u{feff}\"petal; length\";\"class \"\"id\"\"\"\r\n\r\n\"1.5\";1\r\n2.5;\"0\"\r\n";
    let d = parse_csv(text, &semicolons).unwrap();
    assert_eq!(features(&d), (&[2, 1][..], &[1.5, 2.5][..]));
    assert_eq!(classes(&d), &[1, 0]);
}

#[test]
fn class_labels_accept_integral_numbers_only() {
    let d = parse("x,y\n1,3.0\n2,+4\n3,5e0\n4,0\n");
    assert_eq!(classes(&d), &[3, 4, 5, 0]);
    for bad in ["-1", "1.5", "nan", "abc", "", "3000000000"] {
        let e = data_error(&format!("x,y\n1,2\n2,{bad}\n"), &CsvOptions::default());
        assert!(
            e.contains("line 3, column 2 (`y`)") && e.contains("not a non-negative integer"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn float_targets_make_f32_labels() {
    let targets = with(|o| {
        o.labels = Labels::Targets;
        o.label = LabelColumn::Index(0);
    });
    let d = parse_csv("price,rooms\n-1.25,3\n2e2,4\n", &targets).unwrap();
    assert_eq!(d.labels().shape(), &[2, 1]);
    assert_eq!(d.labels().as_f32().unwrap(), &[-1.25, 200.0]);
    assert_eq!(d.num_classes(), None);
    let e = data_error("price,rooms\ninf,3\n", &targets);
    assert!(
        e.contains("line 2, column 1 (`price`)") && e.contains("infinite"),
        "{e}"
    );
}

#[test]
fn bad_values_name_their_line_and_column() {
    let cases = [
        (
            "a,b,c\n1,2,0\n1,x,0\n",
            "line 3, column 2 (`b`): `x` is not a number",
        ),
        ("a,b,c\n1,,0\n", "line 2, column 2 (`b`): empty field"),
        ("a,b,c\n1,NaN,0\n", "line 2, column 2 (`b`): `NaN` is NaN"),
        (
            "a,b,c\n1,2,0\n\n-inf,2,0\n",
            "line 4, column 1 (`a`): `-inf` is infinite",
        ),
        ("1,2,0\n1,1e39,0\n", "line 2, column 2: `1e39` is infinite"),
        (
            "a,b,c\n1,2,0\n1,2\n",
            "line 3: 2 fields, expected 3 (as on line 1)",
        ),
        ("a,b,c\n1,2,0\n1,2,0,4\n", "line 3: 4 fields, expected 3"),
        ("\"multi\nline\",b,c\n1,2,0\n1,2\n", "line 4: 2 fields"),
        (
            "a,b,c\n1,\"2,0\n",
            "line 2, column 2: a quoted field is never closed",
        ),
        (
            "a,b,c\n1,2\"3,0\n",
            "line 2, column 2: a quote inside an unquoted field",
        ),
    ];
    for (text, expected) in cases {
        let e = data_error(text, &CsvOptions::default());
        assert!(e.contains(expected), "{text:?}: {e}");
    }
}

#[test]
fn missing_rows_and_columns_are_errors() {
    let default = CsvOptions::default();
    let cases = [
        ("", &default, "empty"),
        ("\n\n  \n", &default, "empty"),
        ("a,b,label\n", &default, "no data rows"),
        ("label\n1\n2\n", &default, "at least one feature column"),
    ];
    for (text, options, expected) in cases {
        let e = data_error(text, options);
        assert!(e.contains(expected), "{text:?}: {e}");
    }
    let e = data_error("a,b\n1,2\n", &by_name("label"));
    assert!(
        e.contains("no label column `label`") && e.contains("a, b"),
        "{e}"
    );
    let e = data_error("1,2\n3,4\n", &by_name("label"));
    assert!(e.contains("no header row"), "{e}");
    for index in [2, -3] {
        let e = data_error("a,b\n1,2\n", &with(|o| o.label = LabelColumn::Index(index)));
        assert!(
            e.contains(&format!("index {index} is out of range for 2")),
            "{e}"
        );
    }
}

#[test]
fn a_quote_or_line_break_cannot_be_the_delimiter() {
    for delimiter in ['"', '\n', '\r'] {
        let e = parse_csv("a,b\n1,2\n", &with(|o| o.delimiter = delimiter)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    }
}

#[test]
fn files_are_read_and_their_errors_name_them() {
    let path = scratch("iris.csv");
    std::fs::write(
        &path,
        "sepal,petal,species\n5.1,1.4,0\n7.0,4.7,1\n6.3,6.0,2\n",
    )
    .unwrap();
    let d = read_csv(&path, &by_name("species")).unwrap();
    assert_eq!(
        features(&d),
        (&[3, 2][..], &[5.1, 1.4, 7.0, 4.7, 6.3, 6.0][..])
    );
    assert_eq!(classes(&d), &[0, 1, 2]);

    let bad = scratch("bad.csv");
    std::fs::write(&bad, "a,b\n1,x\n").unwrap();
    let e = read_csv(&bad, &CsvOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.csv: line 2, column 2 (`b`)"), "{e}");

    let binary = scratch("binary.csv");
    std::fs::write(&binary, b"a,b\n1,\xff\n").unwrap();
    let e = read_csv(&binary, &CsvOptions::default()).unwrap_err();
    assert!(
        matches!(&e, Error::Data(m) if m.contains("binary.csv") && m.contains("offset 6")),
        "{e}"
    );

    let e = read_csv(scratch("missing.csv"), &CsvOptions::default()).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, .. } if path.ends_with("missing.csv")),
        "{e}"
    );
}
