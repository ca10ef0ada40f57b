//! Encoding one series ([`AggregateColumns`]) as a history response body: row JSON, column JSON or
//! CSV, written straight from the columns.
//!
//! Why columns: a 30-day, 1-minute series is 43,200 windows. Building a `WindowAggregate` (four strings
//! and a metric map) per window, then a `serde_json::Value` tree of the whole response, cost most of
//! the request's time; the columns are read from the store without a map per window and serialized
//! without an intermediate tree.
//!
//! Shapes (`GET /api/v1/history`, see `openapi.json`):
//! - [`Layout::Rows`] (default): `{kind, scope, id, resolution, from_ms, to_ms, rows: [WindowAggregate]}`,
//!   each row with only the metrics that window has (byte-for-byte what serializing the rows gives).
//! - [`Layout::Columns`]: `{kind, scope, id, resolution, from_ms, to_ms, window_ms, start_ms: [..],
//!   version: [..], count: [..], district: [..], metrics: {name: [number | null]}}`, all arrays one
//!   entry per window (`null`: the window lacks that metric). About a third of the row form's size.
//! - CSV: `start_utc, start_ms, window_ms, count`, then one column per metric name (sorted), empty where
//!   the window lacks the metric.

use serde::Serialize;
use std::fmt::Write as _;
use stream_core::store::AggregateColumns;

/// How a JSON history body is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One object per window (`rows`), the default.
    Rows,
    /// One array per field and per metric.
    Columns,
}

impl Layout {
    /// Parses the `layout` query value (`rows` or `columns`).
    pub fn parse(s: &str) -> Option<Layout> {
        match s {
            "rows" => Some(Layout::Rows),
            "columns" => Some(Layout::Columns),
            _ => None,
        }
    }
}

/// What the response says about the request besides the series.
#[derive(Debug, Clone, Copy)]
pub struct Echo<'a> {
    /// `1m`, `15m`, `1h` or `1d`.
    pub resolution: &'a str,
    /// Requested range start, UTC epoch ms.
    pub from_ms: i64,
    /// Requested range end, UTC epoch ms.
    pub to_ms: i64,
}

/// The JSON body for `cols` in `layout`.
///
/// # Errors
/// Serialization failures (none are expected: every value is a number or a string).
pub fn json_body(
    cols: &AggregateColumns,
    echo: Echo<'_>,
    layout: Layout,
) -> Result<Vec<u8>, serde_json::Error> {
    match layout {
        Layout::Rows => rows_body(cols, echo),
        Layout::Columns => {
            // About 20 bytes per value: one allocation for the whole body.
            let mut out = Vec::with_capacity(256 + cols.len() * (60 + 20 * cols.metrics.len()));
            serde_json::to_writer(
                &mut out,
                &ColumnsBody {
                    resolution: echo.resolution,
                    from_ms: echo.from_ms,
                    to_ms: echo.to_ms,
                    series: cols,
                },
            )?;
            Ok(out)
        }
    }
}

#[derive(Serialize)]
struct ColumnsBody<'a> {
    resolution: &'a str,
    from_ms: i64,
    to_ms: i64,
    #[serde(flatten)]
    series: &'a AggregateColumns,
}

/// Appends `v` as serde_json writes it (strings escaped, floats in serde_json's shortest form,
/// non-finite floats as `null`).
fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> Result<(), serde_json::Error> {
    serde_json::to_writer(&mut *out, v)
}

/// The row layout, written by hand: serializing the same rows with serde_json gives the same bytes (a
/// test checks it), but the parts every row shares (kind, scope, id, metric names, the district while
/// it does not change) are escaped once instead of once per window.
fn rows_body(c: &AggregateColumns, echo: Echo<'_>) -> Result<Vec<u8>, serde_json::Error> {
    // `"name":` of each metric, escaped once.
    let mut names = Vec::with_capacity(c.metrics.len());
    for name in c.metrics.keys() {
        let mut k = serde_json::to_vec(name)?;
        k.push(b':');
        names.push(k);
    }
    let columns: Vec<&Vec<Option<f64>>> = c.metrics.values().collect();
    // `{"kind":…,"scope":…,"id":…` opens the body and every row.
    let mut series = b"{\"kind\":".to_vec();
    put(&mut series, &c.kind)?;
    series.extend_from_slice(b",\"scope\":");
    put(&mut series, &c.scope)?;
    series.extend_from_slice(b",\"id\":");
    put(&mut series, &c.id)?;
    let per_row = series.len() + 130 + names.iter().map(|n| n.len() + 20).sum::<usize>();
    let mut out = Vec::with_capacity(256 + c.len() * per_row);
    out.extend_from_slice(&series);
    out.extend_from_slice(b",\"resolution\":");
    put(&mut out, echo.resolution)?;
    out.extend_from_slice(b",\"from_ms\":");
    put(&mut out, &echo.from_ms)?;
    out.extend_from_slice(b",\"to_ms\":");
    put(&mut out, &echo.to_ms)?;
    out.extend_from_slice(b",\"rows\":[");
    let mut district: (Option<&str>, Vec<u8>) = (None, Vec::new());
    for i in 0..c.len() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&series);
        out.extend_from_slice(b",\"district\":");
        let d = c.district[i].as_str();
        if district.0 != Some(d) {
            district = (Some(d), serde_json::to_vec(d)?);
        }
        out.extend_from_slice(&district.1);
        out.extend_from_slice(b",\"start_ms\":");
        put(&mut out, &c.start_ms[i])?;
        out.extend_from_slice(b",\"window_ms\":");
        put(&mut out, &c.window_ms)?;
        out.extend_from_slice(b",\"version\":");
        put(&mut out, &c.version[i])?;
        out.extend_from_slice(b",\"count\":");
        put(&mut out, &c.count[i])?;
        out.extend_from_slice(b",\"metrics\":{");
        let mut first = true;
        for (name, col) in names.iter().zip(&columns) {
            if let Some(v) = col[i] {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(name);
                put(&mut out, &v)?;
            }
        }
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// The CSV export of `cols` (header line, then one line per window).
///
/// # Errors
/// CSV writer failures (none are expected when writing to memory).
pub fn csv_body(cols: &AggregateColumns) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(
        64 + cols.len() * (48 + 20 * cols.metrics.len()),
    ));
    w.write_field("start_utc")?;
    w.write_field("start_ms")?;
    w.write_field("window_ms")?;
    w.write_field("count")?;
    for name in cols.metrics.keys() {
        w.write_field(name)?;
    }
    w.write_record(None::<&[u8]>)?;
    let window = cols.window_ms.to_string();
    let metrics: Vec<&Vec<Option<f64>>> = cols.metrics.values().collect();
    let mut buf = String::new();
    for i in 0..cols.len() {
        w.write_field(crate::timefmt::rfc3339_ms(cols.start_ms[i]))?;
        buf.clear();
        let _ = write!(buf, "{}", cols.start_ms[i]);
        w.write_field(&buf)?;
        w.write_field(&window)?;
        buf.clear();
        let _ = write!(buf, "{}", cols.count[i]);
        w.write_field(&buf)?;
        for col in &metrics {
            buf.clear();
            if let Some(v) = col[i] {
                let _ = write!(buf, "{v}");
            }
            w.write_field(&buf)?;
        }
        w.write_record(None::<&[u8]>)?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use telemetry::DeviceKind;
    use telemetry::message::WindowAggregate;

    fn rows() -> Vec<WindowAggregate> {
        let row = |start_ms: i64, district: &str, m: &[(&str, f64)]| WindowAggregate {
            kind: DeviceKind::Parking,
            scope: "lot".into(),
            id: "L1".into(),
            district: district.into(),
            start_ms,
            window_ms: 60_000,
            version: 1 + (start_ms % 2) as u32,
            count: 3,
            metrics: m.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        vec![
            row(
                0,
                "central",
                &[("arrivals", 2.0), ("occupancy_mean_ratio", 0.25)],
            ),
            row(60_000, "central", &[("occupancy_mean_ratio", 0.1 + 0.2)]),
            row(120_001, "north", &[]),
            row(
                180_000,
                "north",
                &[("arrivals", 1e-7), ("departures", -3.5)],
            ),
        ]
    }

    /// Strings that need escaping, a district that changes back and forth, extreme floats.
    fn awkward_rows() -> Vec<WindowAggregate> {
        let mut rows = rows();
        rows[1].district = "no\"rth\u{e9}\n".into();
        rows[2].district = "central".into();
        rows[3].metrics.insert("we\"ird\\name".into(), f64::MAX);
        rows[0].metrics.insert("tiny".into(), -f64::MIN_POSITIVE);
        for r in &mut rows {
            r.id = "L\"1".into();
        }
        rows
    }

    fn cols(rows: &[WindowAggregate]) -> AggregateColumns {
        AggregateColumns::from_rows(DeviceKind::Parking, "lot", "L1", 60_000, rows)
    }

    const ECHO: Echo<'static> = Echo {
        resolution: "1m",
        from_ms: 0,
        to_ms: 240_000,
    };

    /// Byte for byte what serde_json gives for the same envelope and rows (the previous encoder).
    #[test]
    fn row_json_bytes_equal_serde_json() {
        #[derive(Serialize)]
        struct Envelope<'a> {
            kind: DeviceKind,
            scope: &'a str,
            id: &'a str,
            resolution: &'a str,
            from_ms: i64,
            to_ms: i64,
            rows: &'a [WindowAggregate],
        }
        for rows in [rows(), awkward_rows(), Vec::new()] {
            let id = rows.first().map_or("L1".to_string(), |r| r.id.clone());
            let c = AggregateColumns::from_rows(DeviceKind::Parking, "lot", &id, 60_000, &rows);
            let want = serde_json::to_vec(&Envelope {
                kind: DeviceKind::Parking,
                scope: "lot",
                id: &id,
                resolution: ECHO.resolution,
                from_ms: ECHO.from_ms,
                to_ms: ECHO.to_ms,
                rows: &rows,
            })
            .unwrap();
            let got = json_body(&c, ECHO, Layout::Rows).unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }

    /// The row layout is exactly what serializing the rows with serde gives (the previous body).
    #[test]
    fn row_json_equals_serialized_rows() {
        let rows = rows();
        let got: serde_json::Value =
            serde_json::from_slice(&json_body(&cols(&rows), ECHO, Layout::Rows).unwrap()).unwrap();
        let want = serde_json::json!({
            "kind": "parking", "scope": "lot", "id": "L1", "resolution": "1m",
            "from_ms": 0, "to_ms": 240_000, "rows": rows,
        });
        assert_eq!(got, want);
        // And byte-for-byte per row (field order, float text).
        let body = String::from_utf8(json_body(&cols(&rows), ECHO, Layout::Rows).unwrap()).unwrap();
        let rows_text = serde_json::to_string(&rows).unwrap();
        assert!(body.contains(&format!("\"rows\":{rows_text}")), "{body}");
    }

    #[test]
    fn column_json_by_hand() {
        let got: serde_json::Value =
            serde_json::from_slice(&json_body(&cols(&rows()), ECHO, Layout::Columns).unwrap())
                .unwrap();
        let want = serde_json::json!({
            "kind": "parking", "scope": "lot", "id": "L1", "resolution": "1m",
            "from_ms": 0, "to_ms": 240_000, "window_ms": 60_000,
            "start_ms": [0, 60_000, 120_001, 180_000],
            "version": [1, 1, 2, 1],
            "count": [3, 3, 3, 3],
            "district": ["central", "central", "north", "north"],
            "metrics": {
                "arrivals": [2.0, null, null, 1e-7],
                "departures": [null, null, null, -3.5],
                "occupancy_mean_ratio": [0.25, 0.30000000000000004, null, null],
            },
        });
        assert_eq!(got, want);
    }

    #[test]
    fn empty_series() {
        let c = cols(&[]);
        let v: serde_json::Value =
            serde_json::from_slice(&json_body(&c, ECHO, Layout::Columns).unwrap()).unwrap();
        assert_eq!(v["start_ms"], serde_json::json!([]));
        assert_eq!(v["metrics"], serde_json::json!({}));
        let v: serde_json::Value =
            serde_json::from_slice(&json_body(&c, ECHO, Layout::Rows).unwrap()).unwrap();
        assert_eq!(v["rows"], serde_json::json!([]));
        assert_eq!(
            String::from_utf8(csv_body(&c).unwrap()).unwrap(),
            "start_utc,start_ms,window_ms,count\n"
        );
    }

    /// CSV as the previous row-by-row writer produced it (plain reference below).
    #[test]
    fn csv_equals_row_by_row_reference() {
        let rows = rows();
        let mut names: Vec<&String> = rows.iter().flat_map(|r| r.metrics.keys()).collect();
        names.sort();
        names.dedup();
        let mut want = String::from("start_utc,start_ms,window_ms,count");
        for n in &names {
            want.push(',');
            want.push_str(n);
        }
        want.push('\n');
        for r in &rows {
            let m: &BTreeMap<String, f64> = &r.metrics;
            want.push_str(&format!(
                "{},{},{},{}",
                crate::timefmt::rfc3339_ms(r.start_ms),
                r.start_ms,
                r.window_ms,
                r.count
            ));
            for n in &names {
                want.push(',');
                if let Some(v) = m.get(*n) {
                    want.push_str(&v.to_string());
                }
            }
            want.push('\n');
        }
        assert_eq!(
            String::from_utf8(csv_body(&cols(&rows)).unwrap()).unwrap(),
            want
        );
    }
}
