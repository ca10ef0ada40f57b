//! JSON/CSV API under `/api/v1` (documented in `openapi.json`; a test keeps the two in step).
//!
//! Authentication: `Authorization: Bearer cb_<id>_<secret>`, or the `cb_token` cookie set by
//! `POST /api/v1/session` (HttpOnly, SameSite=Strict) so pages, `EventSource` and download links work
//! without script access to the token. Only `/api/v1/catalog` and `/api/v1/open/parking` work without a
//! token. Every dataset read appends one audit row before the data is returned (a failed audit write
//! fails the request).

use crate::access::{AuditRow, AuthFailure, Dataset, Resolution, Role, TokenInfo};
use crate::error::AppError;
use crate::live;
use crate::metrics::Metrics;
use crate::series::{self, Layout};
use crate::{AppState, rollup};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use stream_core::store::{
    AggregateColumns, AggregateQuery, QualityQuery, QualityRow, ReadingQuery,
};
use telemetry::DeviceKind;
use telemetry::message::WindowAggregate;

/// Name of the session cookie.
pub const COOKIE: &str = "cb_token";

/// The API routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/session",
            post(session_create).delete(session_delete),
        )
        .route("/api/v1/me", get(me))
        .route("/api/v1/registry", get(registry))
        .route("/api/v1/live", get(live_snapshot))
        .route("/api/v1/live/stream", get(live_stream))
        .route("/api/v1/history", get(history))
        .route("/api/v1/readings", get(readings))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/devices/health", get(device_health))
        .route("/api/v1/catalog", get(catalog))
        .route("/api/v1/quality", get(quality))
        .route("/api/v1/quality/scorecard", get(scorecard))
        .route("/api/v1/dead-letters", get(dead_letters))
        .route("/api/v1/access-log", get(access_log))
        .route("/api/v1/open/parking", get(open_parking))
}

// ---------------------------------------------------------------------------------------------------
// Authentication

/// The token presented with the request, if any (Bearer header first, then the session cookie).
pub fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for part in s.split(';') {
            if let Some(t) = part.trim().strip_prefix("cb_token=")
                && !t.is_empty()
            {
                return Some(t.to_string());
            }
        }
    }
    None
}

async fn verify(state: &AppState, token: String) -> Result<TokenInfo, AppError> {
    let access = state.access.clone();
    let now = state.now_ms();
    let r = tokio::task::spawn_blocking(move || access.verify(&token, now)).await??;
    r.map_err(|f| {
        AppError::Unauthorized(match f {
            AuthFailure::Malformed => "malformed token (expected cb_<id>_<secret>)".into(),
            AuthFailure::Unknown => "unknown token".into(),
            AuthFailure::Expired => "token expired".into(),
            AuthFailure::Revoked => "token revoked".into(),
        })
    })
}

/// An authenticated caller (401 without a valid token).
pub struct Caller(pub TokenInfo);

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(t) = parts.extensions.get::<TokenInfo>() {
            return Ok(Caller(t.clone()));
        }
        let Some(tok) = presented_token(&parts.headers) else {
            return Err(AppError::Unauthorized(
                "missing token: send `Authorization: Bearer <token>` or sign in on the page".into(),
            ));
        };
        let info = verify(state, tok).await?;
        parts.extensions.insert(info.clone());
        Ok(Caller(info))
    }
}

/// A caller who may be anonymous (public role); a presented but invalid token is still a 401.
pub struct MaybeCaller(pub TokenInfo);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if presented_token(&parts.headers).is_none() {
            return Ok(MaybeCaller(TokenInfo::anonymous()));
        }
        Caller::from_request_parts(parts, state)
            .await
            .map(|c| MaybeCaller(c.0))
    }
}

// ---------------------------------------------------------------------------------------------------
// Helpers

type Params = Query<HashMap<String, String>>;

fn check_params(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), AppError> {
    let mut keys: Vec<&String> = q.keys().collect();
    keys.sort();
    match keys.into_iter().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(AppError::bad(
            k,
            format!("unknown parameter; allowed: {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn opt_i64(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, AppError> {
    q.get(name)
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| AppError::bad(name, format!("expected an integer, got {v:?}")))
        })
        .transpose()
}

fn req_str<'a>(q: &'a HashMap<String, String>, name: &str) -> Result<&'a str, AppError> {
    match q.get(name).map(|s| s.trim()) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(AppError::bad(name, "required")),
    }
}

fn check_ident(name: &str, v: &str) -> Result<(), AppError> {
    telemetry::ids::check_id(v)
        .map_err(|e| AppError::bad(name, format!("not a valid identifier ({e:?})")))
}

fn range(
    q: &HashMap<String, String>,
    now: i64,
    default_span_ms: i64,
) -> Result<(i64, i64), AppError> {
    let to = opt_i64(q, "to_ms")?.unwrap_or(now);
    let from = opt_i64(q, "from_ms")?.unwrap_or(to - default_span_ms);
    if from >= to {
        return Err(AppError::bad("from_ms", "must be before to_ms"));
    }
    Ok((from, to))
}

fn limit(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, AppError> {
    match opt_i64(q, "limit")? {
        None => Ok(default.min(max)),
        Some(n) if n >= 1 && (n as u64) <= max as u64 => Ok(n as usize),
        Some(_) => Err(AppError::bad(
            "limit",
            format!("must be between 1 and {max}"),
        )),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

fn format(q: &HashMap<String, String>) -> Result<Format, AppError> {
    match q.get("format").map(|s| s.as_str()) {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(_) => Err(AppError::bad("format", "expected json or csv")),
    }
}

fn forbid(r: Result<(), String>) -> Result<(), AppError> {
    r.map_err(AppError::Forbidden)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f).await?
}

/// What one audited read was.
struct Read<'a> {
    dataset: &'a str,
    action: &'a str,
    query: String,
    from_ms: i64,
    to_ms: i64,
    rows: usize,
}

async fn audit(state: &AppState, caller: &TokenInfo, r: Read<'_>) -> Result<(), AppError> {
    let row = AuditRow {
        seq: 0,
        ts_ms: state.now_ms(),
        token_id: caller.id.clone(),
        application: caller.application.clone(),
        purpose: caller.purpose.clone(),
        role: caller.role.as_str().into(),
        dataset: r.dataset.into(),
        action: r.action.into(),
        query: r.query,
        from_ms: r.from_ms,
        to_ms: r.to_ms,
        rows: r.rows as i64,
    };
    let access = state.access.clone();
    match tokio::task::spawn_blocking(move || access.audit(&row)).await? {
        Ok(_) => {
            Metrics::inc(&state.metrics.audit_rows);
            Ok(())
        }
        Err(e) => {
            Metrics::inc(&state.metrics.audit_failures);
            Err(AppError::Internal(format!("audit write failed: {e}")))
        }
    }
}

/// Neutralises spreadsheet formulas in text cells (CSV injection).
fn csv_text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

fn safe_filename(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn csv_response(body: Vec<u8>, filename: &str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        safe_filename(filename)
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

fn csv_err(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("csv: {e}"))
}

// ---------------------------------------------------------------------------------------------------
// Session and identity

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionBody {
    token: String,
}

/// `POST /api/v1/session` `{"token": "..."}`: checks the token and sets it as an HttpOnly cookie.
async fn session_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    // JSON only: a cross-site HTML form cannot send it without a CORS preflight (login CSRF).
    let json_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_ct {
        return Err(AppError::bad("content-type", "expected application/json"));
    }
    let b: SessionBody =
        serde_json::from_slice(&body).map_err(|e| AppError::bad("token", e.to_string()))?;
    let info = verify(&state, b.token.clone()).await?;
    let max_age = ((info.expires_ms - state.now_ms()) / 1000).clamp(0, 86_400);
    let secure = if state.cfg.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}",
        b.token
    );
    let mut resp = Json(&info).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| AppError::Internal(e.to_string()))?,
    );
    Ok(resp)
}

/// `DELETE /api/v1/session`: clears the cookie.
async fn session_delete() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("cb_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    resp
}

/// `GET /api/v1/me`: what the caller's token grants.
async fn me(Caller(c): Caller) -> Json<TokenInfo> {
    Json(c)
}

// ---------------------------------------------------------------------------------------------------
// Registry, live

/// `GET /api/v1/registry`: lots and feeders with schematic positions; devices only of kinds whose raw
/// data the caller may read.
async fn registry(
    State(state): State<AppState>,
    Caller(c): Caller,
) -> Result<Json<serde_json::Value>, AppError> {
    if c.role == Role::Public {
        return Err(AppError::forbidden(
            "the public role sees the open-data product only",
        ));
    }
    let reg = &state.registry;
    let devices: Vec<_> = reg
        .devices
        .iter()
        .filter(|d| c.can(Dataset::raw(d.kind)))
        .collect();
    Ok(Json(
        json!({"lots": reg.lots, "feeders": reg.feeders, "devices": devices}),
    ))
}

#[derive(Serialize)]
struct LiveSnapshot {
    now_ms: i64,
    window_ms: i64,
    lots: Option<Vec<WindowAggregate>>,
    feeders: Option<Vec<WindowAggregate>>,
    alerts: Option<Vec<telemetry::message::Alert>>,
}

/// `GET /api/v1/live`: newest lot and feeder windows, and the last 24 h of alerts (each part only
/// when the caller may read it; 403 when none).
async fn live_snapshot(
    State(state): State<AppState>,
    Caller(c): Caller,
) -> Result<Json<LiveSnapshot>, AppError> {
    let window_ms = Resolution::from_ms(state.cfg.live_window_ms)
        .map(|r| r.max(c.finest).max(Resolution::M1).ms())
        .unwrap_or(state.cfg.live_window_ms);
    let (p, g, a) = (
        c.can(Dataset::ParkingAgg),
        c.can(Dataset::GridAgg),
        c.can(Dataset::Alerts),
    );
    if !(p || g || a) {
        return Err(AppError::forbidden(format!(
            "the live view needs parking_aggregates, grid_aggregates or alerts; token `{}` has none",
            c.id
        )));
    }
    let now = state.now_ms();
    let store = state.store.clone();
    let reg = state.registry.clone();
    let caller = c.clone();
    let snap = blocking(move || {
        let lots = if p {
            Some(store.latest_aggregates(DeviceKind::Parking, "lot", window_ms, None)?)
        } else {
            None
        };
        let feeders = if g {
            Some(store.latest_aggregates(DeviceKind::Grid, "feeder", window_ms, None)?)
        } else {
            None
        };
        let alerts = if a {
            let mut v = store.recent_alerts(now - 86_400_000, 200)?;
            v.retain(|al| live::visible(&live::LiveEvent::Alert(al.clone()), &caller, &reg));
            Some(v)
        } else {
            None
        };
        Ok(LiveSnapshot {
            now_ms: now,
            window_ms,
            lots,
            feeders,
            alerts,
        })
    })
    .await?;
    for (ds, rows) in [
        ("parking_aggregates", snap.lots.as_ref().map(Vec::len)),
        ("grid_aggregates", snap.feeders.as_ref().map(Vec::len)),
        ("alerts", snap.alerts.as_ref().map(Vec::len)),
    ] {
        if let Some(rows) = rows {
            audit(
                &state,
                &c,
                Read {
                    dataset: ds,
                    action: "live",
                    query: "latest".into(),
                    from_ms: 0,
                    to_ms: now,
                    rows,
                },
            )
            .await?;
        }
    }
    Ok(Json(snap))
}

/// `GET /api/v1/live/stream`: server-sent events (`aggregate`, `alert`, `lagged`), filtered by the
/// caller's rights. One audit row per connection.
async fn live_stream(
    State(state): State<AppState>,
    Caller(c): Caller,
) -> Result<Response, AppError> {
    if !(c.can(Dataset::ParkingAgg) || c.can(Dataset::GridAgg) || c.can(Dataset::Alerts)) {
        return Err(AppError::forbidden(format!(
            "the live stream needs parking_aggregates, grid_aggregates or alerts; token `{}` has none",
            c.id
        )));
    }
    let now = state.now_ms();
    audit(
        &state,
        &c,
        Read {
            dataset: "live",
            action: "stream",
            query: "sse".into(),
            from_ms: now,
            to_ms: 0,
            rows: 0,
        },
    )
    .await?;
    let rx = state.live.subscribe();
    let stream = live::event_stream(
        rx,
        c,
        state.registry.clone(),
        state.metrics.clone(),
        state.shutdown.clone(),
    );
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------------
// History and raw readings

/// The series a history request names, checked against the registry.
fn resolve_series(
    state: &AppState,
    q: &HashMap<String, String>,
) -> Result<(DeviceKind, String, String), AppError> {
    let scope = req_str(q, "scope")?;
    let id = req_str(q, "id")?;
    check_ident("id", id)?;
    let kind_param = q.get("kind").map(|k| {
        DeviceKind::parse(k).ok_or_else(|| AppError::bad("kind", "expected parking or grid"))
    });
    let kind_param = kind_param.transpose()?;
    let reg = &state.registry;
    let kind = match scope {
        "lot" => {
            reg.lot(id)
                .ok_or_else(|| AppError::NotFound(format!("no lot `{id}`")))?;
            DeviceKind::Parking
        }
        "feeder" => {
            reg.feeder(id)
                .ok_or_else(|| AppError::NotFound(format!("no feeder `{id}`")))?;
            DeviceKind::Grid
        }
        "device" => {
            reg.device(id)
                .ok_or_else(|| AppError::NotFound(format!("no device `{id}`")))?
                .kind
        }
        "district" => {
            let has_lots = reg.lots.iter().any(|l| l.district.as_str() == id);
            let has_feeders = reg.feeders.iter().any(|f| f.district.as_str() == id);
            match (kind_param, has_lots, has_feeders) {
                (_, false, false) => return Err(AppError::NotFound(format!("no district `{id}`"))),
                (Some(k), _, _) => k,
                (None, true, false) => DeviceKind::Parking,
                (None, false, true) => DeviceKind::Grid,
                (None, true, true) => {
                    return Err(AppError::bad(
                        "kind",
                        "required for a district (parking or grid)",
                    ));
                }
            }
        }
        _ => {
            return Err(AppError::bad(
                "scope",
                "expected lot, feeder, device or district",
            ));
        }
    };
    if let Some(k) = kind_param
        && k != kind
    {
        return Err(AppError::bad(
            "kind",
            format!("{scope} `{id}` is {kind}, not {k}"),
        ));
    }
    Ok((kind, scope.to_string(), id.to_string()))
}

/// Reads one series at a resolution, in columns: 1 m and 15 m straight from the store
/// ([`SeriesStore::query_aggregate_columns`]), 1 h and 1 d rolled up from 15-min rows over the
/// bucket-aligned range. Shared by the API and the benchmark.
///
/// [`SeriesStore::query_aggregate_columns`]: stream_core::store::SeriesStore::query_aggregate_columns
///
/// # Errors
/// Storage failures.
pub fn read_series(
    store: &dyn stream_core::store::SeriesStore,
    kind: DeviceKind,
    scope: &str,
    id: &str,
    res: Resolution,
    from_ms: i64,
    to_ms: i64,
) -> Result<AggregateColumns, stream_core::store::StoreError> {
    let step = res.ms().max(60_000);
    let base = if res <= Resolution::M15 {
        step
    } else {
        Resolution::M15.ms()
    };
    let from_a = from_ms.div_euclid(step) * step;
    let to_a = (to_ms + step - 1).div_euclid(step) * step;
    let q = AggregateQuery {
        kind,
        scope: scope.into(),
        id: id.into(),
        window_ms: base,
        from_ms: from_a,
        to_ms: to_a,
    };
    if base == step {
        return store.query_aggregate_columns(&q);
    }
    // At most (range / 15 min) rows: small next to a 1-minute read, so the row roll-up is kept.
    let rows = rollup::rollup(&store.query_aggregates(&q)?, step);
    Ok(AggregateColumns::from_rows(kind, scope, id, step, &rows))
}

/// `GET /api/v1/history`: one series (lot, feeder, device or district) over a range at a resolution;
/// `format=csv` downloads it; `layout=columns` returns JSON arrays per field (see [`series`]).
async fn history(
    State(state): State<AppState>,
    Caller(c): Caller,
    Query(q): Params,
) -> Result<Response, AppError> {
    check_params(
        &q,
        &[
            "kind",
            "scope",
            "id",
            "from_ms",
            "to_ms",
            "resolution",
            "format",
            "layout",
        ],
    )?;
    let (kind, scope, id) = resolve_series(&state, &q)?;
    let res = match q.get("resolution") {
        None => Resolution::M15,
        Some(r) => Resolution::parse(r)
            .filter(|r| *r != Resolution::Raw)
            .ok_or_else(|| AppError::bad("resolution", "expected 1m, 15m, 1h or 1d"))?,
    };
    let (from, to) = range(&q, state.now_ms(), 86_400_000)?;
    if (to - from) / res.ms() > state.cfg.max_history_points {
        return Err(AppError::bad(
            "from_ms",
            format!(
                "range too long for {}: at most {} points",
                res.as_str(),
                state.cfg.max_history_points
            ),
        ));
    }
    let fmt = format(&q)?;
    let layout = match q.get("layout") {
        None => Layout::Rows,
        Some(_) if fmt == Format::Csv => {
            return Err(AppError::bad("layout", "applies to format=json only"));
        }
        Some(l) => {
            Layout::parse(l).ok_or_else(|| AppError::bad("layout", "expected rows or columns"))?
        }
    };
    let dataset = if scope == "device" {
        Dataset::raw(kind)
    } else {
        Dataset::aggregates(kind)
    };
    if scope == "device" && !c.can(dataset) {
        return Err(AppError::forbidden(format!(
            "device-level {kind} series are raw data (dataset `{}`): {}",
            dataset.as_str(),
            c.require(dataset).err().unwrap_or_default()
        )));
    }
    forbid(c.require(dataset))?;
    forbid(c.require_resolution(res))?;
    let store = state.store.clone();
    let (s2, i2) = (scope.clone(), id.clone());
    // Read and encode off the runtime (a 30-day 1-minute body is several MB); audit before returning it.
    let (n, body) = blocking(move || {
        let cols = read_series(store.as_ref(), kind, &s2, &i2, res, from, to)?;
        let echo = series::Echo {
            resolution: res.as_str(),
            from_ms: from,
            to_ms: to,
        };
        let body = match fmt {
            Format::Json => series::json_body(&cols, echo, layout)
                .map_err(|e| AppError::Internal(format!("history JSON: {e}")))?,
            Format::Csv => series::csv_body(&cols).map_err(csv_err)?,
        };
        Ok((cols.len(), body))
    })
    .await?;
    let query = format!("{kind}/{scope}/{id}@{}", res.as_str());
    let action = if fmt == Format::Csv {
        "export_csv"
    } else {
        "history"
    };
    audit(
        &state,
        &c,
        Read {
            dataset: dataset.as_str(),
            action,
            query,
            from_ms: from,
            to_ms: to,
            rows: n,
        },
    )
    .await?;
    match fmt {
        Format::Json => Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()),
        Format::Csv => Ok(csv_response(
            body,
            &format!("history-{kind}-{scope}-{id}-{}.csv", res.as_str()),
        )),
    }
}

/// `GET /api/v1/readings`: raw readings of one device or site (raw datasets; resolution `raw`).
async fn readings(
    State(state): State<AppState>,
    Caller(c): Caller,
    Query(q): Params,
) -> Result<Response, AppError> {
    check_params(
        &q,
        &["device", "site", "from_ms", "to_ms", "limit", "format"],
    )?;
    let reg = &state.registry;
    let (kind, device, site) = match (q.get("device"), q.get("site")) {
        (Some(d), None) => {
            check_ident("device", d)?;
            let dev = reg
                .device(d)
                .ok_or_else(|| AppError::NotFound(format!("no device `{d}`")))?;
            (dev.kind, Some(d.clone()), None)
        }
        (None, Some(s)) => {
            check_ident("site", s)?;
            let kind = if reg.lot(s).is_some() {
                DeviceKind::Parking
            } else if reg.feeder(s).is_some() {
                DeviceKind::Grid
            } else {
                return Err(AppError::NotFound(format!("no site `{s}`")));
            };
            (kind, None, Some(s.clone()))
        }
        _ => {
            return Err(AppError::bad(
                "device",
                "give exactly one of device or site",
            ));
        }
    };
    let (from, to) = range(&q, state.now_ms(), 3_600_000)?;
    let lim = limit(&q, 1000, state.cfg.max_raw_rows)?;
    let fmt = format(&q)?;
    let dataset = Dataset::raw(kind);
    forbid(c.require(dataset))?;
    forbid(c.require_resolution(Resolution::Raw))?;
    let store = state.store.clone();
    let rq = ReadingQuery {
        device: device.clone(),
        site: site.clone(),
        from_ms: from,
        to_ms: to,
        limit: lim,
    };
    let rows = blocking(move || Ok(store.query_readings(&rq)?)).await?;
    let query = device.or(site).unwrap_or_default();
    let action = if fmt == Format::Csv {
        "export_csv"
    } else {
        "readings"
    };
    audit(
        &state,
        &c,
        Read {
            dataset: dataset.as_str(),
            action,
            query: query.clone(),
            from_ms: from,
            to_ms: to,
            rows: rows.len(),
        },
    )
    .await?;
    match fmt {
        Format::Json => {
            Ok(Json(json!({"from_ms": from, "to_ms": to, "readings": rows})).into_response())
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record([
                "device",
                "site",
                "district",
                "boot",
                "seq",
                "ts_ms",
                "type",
                "data_json",
            ])
            .map_err(csv_err)?;
            for r in &rows {
                w.write_record([
                    csv_text(r.device.as_str()),
                    csv_text(r.site.as_str()),
                    csv_text(r.district.as_str()),
                    r.boot.to_string(),
                    r.seq.to_string(),
                    r.ts_ms.to_string(),
                    r.data.type_name().to_string(),
                    serde_json::to_string(&r.data).unwrap_or_default(),
                ])
                .map_err(csv_err)?;
            }
            Ok(csv_response(
                w.into_inner().map_err(csv_err)?,
                &format!("readings-{query}.csv"),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Alerts, devices

/// `GET /api/v1/alerts`: alert transitions since `since_ms` (default 24 h ago), newest first.
async fn alerts(
    State(state): State<AppState>,
    Caller(c): Caller,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, AppError> {
    check_params(&q, &["since_ms", "limit"])?;
    forbid(c.require(Dataset::Alerts))?;
    let now = state.now_ms();
    let since = opt_i64(&q, "since_ms")?.unwrap_or(now - 86_400_000);
    let lim = limit(&q, 100, 1000)?;
    let store = state.store.clone();
    let mut rows = blocking(move || Ok(store.recent_alerts(since, lim)?)).await?;
    rows.retain(|al| live::visible(&live::LiveEvent::Alert(al.clone()), &c, &state.registry));
    audit(
        &state,
        &c,
        Read {
            dataset: "alerts",
            action: "alerts",
            query: String::new(),
            from_ms: since,
            to_ms: now,
            rows: rows.len(),
        },
    )
    .await?;
    Ok(Json(json!({ "alerts": rows })))
}

#[derive(Serialize)]
struct HealthRow {
    #[serde(flatten)]
    health: stream_core::store::DeviceHealth,
    report_interval_s: Option<u32>,
    offline: bool,
}

/// When the newest reading of any device is older than this, the store holds a replay of history
/// and device silence is judged against the data clock, not the wall clock, ms (1 day).
pub const REPLAY_CLOCK_AFTER_MS: i64 = 86_400_000;

/// `GET /api/v1/devices/health`: last seen, battery and offline flag per device of the kinds whose raw
/// data the caller may read. A device is offline when silent for more than 3 report intervals,
/// counted to the wall clock — or, when the newest reading of any device is more than
/// [`REPLAY_CLOCK_AFTER_MS`] old (a replay of historical data, as in the demo), to that newest
/// reading's time (the data clock), so a replay shows which devices fell silent *in the data*.
/// The response names the reference: `{"now_ms", "clock": "wall"|"data", "clock_ms", "devices"}`.
async fn device_health(
    State(state): State<AppState>,
    Caller(c): Caller,
) -> Result<Json<serde_json::Value>, AppError> {
    let (p, g) = (c.can(Dataset::ParkingRaw), c.can(Dataset::GridRaw));
    if !(p || g) {
        return Err(AppError::forbidden(
            "device health is derived from raw readings: needs parking_raw or grid_raw (operators only)",
        ));
    }
    let store = state.store.clone();
    let rows = blocking(move || Ok(store.device_health()?)).await?;
    let now = state.now_ms();
    let newest = rows.iter().map(|h| h.last_seen_ms).max();
    let (clock, clock_ms) = match newest {
        Some(n) if now - n > REPLAY_CLOCK_AFTER_MS => ("data", n),
        _ => ("wall", now),
    };
    let out: Vec<HealthRow> = rows
        .into_iter()
        .filter(|h| c.can(Dataset::raw(h.kind)))
        .map(|h| {
            let interval = state
                .registry
                .device(&h.device)
                .map(|d| d.report_interval_s);
            let silent_ms = clock_ms - h.last_seen_ms;
            let offline = silent_ms > 3 * 1000 * i64::from(interval.unwrap_or(3600));
            HealthRow {
                health: h,
                report_interval_s: interval,
                offline,
            }
        })
        .collect();
    let ds = if p && g {
        "parking_raw,grid_raw"
    } else if p {
        "parking_raw"
    } else {
        "grid_raw"
    };
    audit(
        &state,
        &c,
        Read {
            dataset: ds,
            action: "device_health",
            query: String::new(),
            from_ms: 0,
            to_ms: now,
            rows: out.len(),
        },
    )
    .await?;
    Ok(Json(
        json!({ "now_ms": now, "clock": clock, "clock_ms": clock_ms, "devices": out }),
    ))
}

// ---------------------------------------------------------------------------------------------------
// Governance

/// `GET /api/v1/catalog`: the data catalog (public).
async fn catalog() -> Json<serde_json::Value> {
    Json(json!({ "datasets": crate::catalog::catalog() }))
}

fn quality_filter(c: &TokenInfo, reg: &telemetry::registry::Registry, r: &QualityRow) -> bool {
    // Per-household sources are raw-level detail.
    let grid_device = r.dataset == "grid" && reg.device(&r.source).is_some();
    !grid_device || c.can(Dataset::GridRaw)
}

async fn quality_rows(
    state: &AppState,
    c: &TokenInfo,
    q: &HashMap<String, String>,
) -> Result<(Vec<QualityRow>, i64, i64), AppError> {
    forbid(c.require(Dataset::Quality))?;
    let (from, to) = range(q, state.now_ms(), 7 * 86_400_000)?;
    let dataset = q.get("dataset").cloned();
    if let Some(d) = &dataset
        && d != "parking"
        && d != "grid"
    {
        return Err(AppError::bad("dataset", "expected parking or grid"));
    }
    let source = q.get("source").cloned();
    if let Some(s) = &source {
        check_ident("source", s)?;
    }
    let store = state.store.clone();
    let qq = QualityQuery {
        dataset,
        source,
        from_ms: from,
        to_ms: to,
    };
    let mut rows = blocking(move || Ok(store.query_quality(&qq)?)).await?;
    rows.retain(|r| quality_filter(c, &state.registry, r));
    Ok((rows, from, to))
}

/// `GET /api/v1/quality`: data-quality rows.
async fn quality(
    State(state): State<AppState>,
    Caller(c): Caller,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, AppError> {
    check_params(&q, &["dataset", "source", "from_ms", "to_ms"])?;
    let (rows, from, to) = quality_rows(&state, &c, &q).await?;
    audit(
        &state,
        &c,
        Read {
            dataset: "quality",
            action: "quality",
            query: String::new(),
            from_ms: from,
            to_ms: to,
            rows: rows.len(),
        },
    )
    .await?;
    Ok(Json(json!({ "rows": rows })))
}

/// One scorecard line: a dataset and source over the range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreLine {
    /// `parking` or `grid`.
    pub dataset: String,
    /// Source id.
    pub source: String,
    /// Windows seen.
    pub windows: usize,
    /// Mean completeness, 0..=1.
    pub completeness: f64,
    /// Mean validity, 0..=1.
    pub validity: f64,
    /// Mean uniqueness, 0..=1.
    pub uniqueness: f64,
    /// Mean consistency, 0..=1.
    pub consistency: f64,
    /// Mean of the windows' p95 ingest lag, ms.
    pub timeliness_p95_ms: f64,
    /// Sum of received readings.
    pub received: u64,
    /// Sum of expected readings.
    pub expected: u64,
    /// Sum of rejected readings.
    pub rejected: u64,
    /// Sum of duplicates.
    pub duplicates: u64,
    /// Mean of completeness, validity, uniqueness and consistency, 0..=1.
    pub score: f64,
    /// Trend: mean completeness of the later half of the windows minus that of the earlier half
    /// (0 with fewer than 2 windows).
    pub completeness_trend: f64,
}

/// Scorecard lines from quality rows (any order), ordered by dataset then source.
pub fn scorecard_lines(rows: &[QualityRow]) -> Vec<ScoreLine> {
    let mut groups: BTreeMap<(String, String), Vec<&QualityRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.dataset.clone(), r.source.clone()))
            .or_default()
            .push(r);
    }
    let mean = |v: &[&QualityRow], f: fn(&QualityRow) -> f64| -> f64 {
        if v.is_empty() {
            0.0
        } else {
            v.iter().map(|r| f(r)).sum::<f64>() / v.len() as f64
        }
    };
    groups
        .into_iter()
        .map(|((dataset, source), mut g)| {
            g.sort_by_key(|r| r.start_ms);
            let completeness = mean(&g, |r| r.completeness);
            let validity = mean(&g, |r| r.validity);
            let uniqueness = mean(&g, |r| r.uniqueness);
            let consistency = mean(&g, |r| r.consistency);
            let half = g.len() / 2;
            let trend = if g.len() < 2 {
                0.0
            } else {
                mean(&g[half..], |r| r.completeness) - mean(&g[..half], |r| r.completeness)
            };
            ScoreLine {
                windows: g.len(),
                completeness,
                validity,
                uniqueness,
                consistency,
                timeliness_p95_ms: mean(&g, |r| r.timeliness_p95_ms),
                received: g.iter().map(|r| r.received).sum(),
                expected: g.iter().map(|r| r.expected).sum(),
                rejected: g.iter().map(|r| r.rejected).sum(),
                duplicates: g.iter().map(|r| r.duplicates).sum(),
                score: (completeness + validity + uniqueness + consistency) / 4.0,
                completeness_trend: trend,
                dataset,
                source,
            }
        })
        .collect()
}

/// `GET /api/v1/quality/scorecard`: per dataset and source, means, totals and a completeness trend.
async fn scorecard(
    State(state): State<AppState>,
    Caller(c): Caller,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, AppError> {
    check_params(&q, &["dataset", "source", "from_ms", "to_ms"])?;
    let (rows, from, to) = quality_rows(&state, &c, &q).await?;
    let lines = scorecard_lines(&rows);
    audit(
        &state,
        &c,
        Read {
            dataset: "quality",
            action: "scorecard",
            query: String::new(),
            from_ms: from,
            to_ms: to,
            rows: rows.len(),
        },
    )
    .await?;
    Ok(Json(
        json!({ "from_ms": from, "to_ms": to, "lines": lines }),
    ))
}

fn require_admin(c: &TokenInfo, what: &str) -> Result<(), AppError> {
    if c.role != Role::Admin {
        return Err(AppError::forbidden(format!(
            "{what} is restricted to the admin role (token role: {})",
            c.role.as_str()
        )));
    }
    Ok(())
}

/// `GET /api/v1/dead-letters`: refused inputs with an escaped-by-construction payload preview (admin).
async fn dead_letters(
    State(state): State<AppState>,
    Caller(c): Caller,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, AppError> {
    check_params(&q, &["since_ms", "limit"])?;
    require_admin(
        &c,
        "the dead-letter browser (payloads may hold household-level readings)",
    )?;
    let now = state.now_ms();
    let since = opt_i64(&q, "since_ms")?.unwrap_or(now - 7 * 86_400_000);
    let lim = limit(&q, 100, 1000)?;
    let store = state.store.clone();
    let rows = blocking(move || Ok(store.recent_dead_letters(since, lim)?)).await?;
    let out: Vec<_> = rows
        .iter()
        .map(|d| {
            let cut = &d.payload[..d.payload.len().min(512)];
            json!({
                "ts_ms": d.ts_ms, "topic": d.topic, "source": d.source, "reason": d.reason, "detail": d.detail,
                "payload_bytes": d.payload.len(), "payload_preview": String::from_utf8_lossy(cut),
            })
        })
        .collect();
    audit(
        &state,
        &c,
        Read {
            dataset: "quality",
            action: "dead_letters",
            query: String::new(),
            from_ms: since,
            to_ms: now,
            rows: out.len(),
        },
    )
    .await?;
    Ok(Json(json!({ "dead_letters": out })))
}

/// `GET /api/v1/access-log`: the audit log, newest first (admin).
async fn access_log(
    State(state): State<AppState>,
    Caller(c): Caller,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, AppError> {
    check_params(&q, &["since_ms", "limit"])?;
    require_admin(&c, "the access log")?;
    let since = opt_i64(&q, "since_ms")?.unwrap_or(0);
    let lim = limit(&q, 200, 5000)?;
    let access = state.access.clone();
    let rows = blocking(move || Ok(access.audit_rows(since, lim)?)).await?;
    audit(
        &state,
        &c,
        Read {
            dataset: "audit",
            action: "access_log",
            query: String::new(),
            from_ms: since,
            to_ms: state.now_ms(),
            rows: rows.len(),
        },
    )
    .await?;
    Ok(Json(json!({ "rows": rows })))
}

// ---------------------------------------------------------------------------------------------------
// Open data

/// `GET /api/v1/open/parking`: FIWARE `OffStreetParking` per lot, at least `open_data_delay_ms` old.
async fn open_parking(
    State(state): State<AppState>,
    MaybeCaller(c): MaybeCaller,
) -> Result<Response, AppError> {
    let now = state.now_ms();
    let w = state.cfg.open_data_window_ms;
    let before = crate::opendata::cutoff_ms(now, state.cfg.open_data_delay_ms, w);
    let store = state.store.clone();
    let rows = blocking(move || {
        Ok(store.latest_aggregates(DeviceKind::Parking, "lot", w, Some(before))?)
    })
    .await?;
    let out = crate::opendata::shape(&rows, &state.registry);
    audit(
        &state,
        &c,
        Read {
            dataset: "open_data",
            action: "open_parking",
            query: String::new(),
            from_ms: 0,
            to_ms: before,
            rows: out.len(),
        },
    )
    .await?;
    let mut resp = Json(out).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    resp.headers_mut()
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
    Ok(resp)
}
