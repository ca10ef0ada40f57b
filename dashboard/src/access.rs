//! Who may read what, API tokens and the append-only audit log.
//!
//! # Tokens
//! A token reads `cb_<id>_<secret>`: `id` is 16 random hex digits (the lookup key, not secret),
//! `secret` is 32 random bytes in unpadded base64url. Only an argon2id PHC string of the secret is
//! stored. Verification looks the row up by `id`, recomputes argon2 with the stored salt and parameters
//! and compares the two outputs in constant time (`subtle`). A successful verification is cached in
//! memory for [`VERIFY_CACHE_TTL_MS`] (secret compared in constant time again), so argon2 runs about once
//! a minute per token rather than per request; revocation and expiry are still checked against the
//! database on every request. Tokens are never logged; the CLI prints a new one once.
//!
//! # Roles and datasets
//! | role | datasets it may be granted |
//! |---|---|
//! | `admin` | all, plus dead letters and the access log |
//! | `grid_manager` | all datasets (incl. `grid_raw`: household-level readings) |
//! | `planner` | `parking_aggregates`, `grid_aggregates` (lot/feeder/district scope only), `alerts`, `quality`, `open_data` |
//! | `public` | `open_data` |
//!
//! A token's effective rights are its datasets ∩ its role's ceiling. Device-scope aggregates count as
//! raw data (grid device scope = one household) and need the matching `*_raw` dataset. A token's finest
//! resolution (`raw` < `1m` < `15m` < `1h` < `1d`) bounds what it may request.
//!
//! # Audit
//! Table `audit` is append-only (SQLite triggers abort any UPDATE or DELETE). One row per read of a
//! dataset: time, token id, application, purpose, role, dataset, action, query, range, rows, status.

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, Params};
use base64::Engine;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// How long a successful argon2 verification is remembered in memory, ms.
pub const VERIFY_CACHE_TTL_MS: i64 = 60_000;
/// Most cached verifications (the cache is cleared when full).
pub const VERIFY_CACHE_MAX: usize = 4096;

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Operators of the platform: everything.
    Admin,
    /// The grid operator: all data including household-level grid readings.
    GridManager,
    /// City planners: aggregates only.
    Planner,
    /// Anyone: the open-data product only.
    Public,
}

impl Role {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::GridManager => "grid_manager",
            Role::Planner => "planner",
            Role::Public => "public",
        }
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "admin" => Role::Admin,
            "grid_manager" => Role::GridManager,
            "planner" => Role::Planner,
            "public" => Role::Public,
            _ => return None,
        })
    }

    /// Whether this role may ever be granted `d`.
    pub fn may_hold(self, d: Dataset) -> bool {
        match self {
            Role::Admin | Role::GridManager => true,
            Role::Planner => !matches!(d, Dataset::ParkingRaw | Dataset::GridRaw),
            Role::Public => d == Dataset::OpenData,
        }
    }
}

/// A dataset of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    /// Raw bay-sensor readings.
    ParkingRaw,
    /// Parking window aggregates.
    #[serde(rename = "parking_aggregates")]
    ParkingAgg,
    /// Raw grid readings (household meters, feeder monitors).
    GridRaw,
    /// Grid window aggregates.
    #[serde(rename = "grid_aggregates")]
    GridAgg,
    /// Alert transitions.
    Alerts,
    /// Data-quality rows.
    Quality,
    /// The public, delayed parking availability product.
    OpenData,
}

impl Dataset {
    /// Every dataset.
    pub const ALL: [Dataset; 7] = [
        Dataset::ParkingRaw,
        Dataset::ParkingAgg,
        Dataset::GridRaw,
        Dataset::GridAgg,
        Dataset::Alerts,
        Dataset::Quality,
        Dataset::OpenData,
    ];

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::ParkingRaw => "parking_raw",
            Dataset::ParkingAgg => "parking_aggregates",
            Dataset::GridRaw => "grid_raw",
            Dataset::GridAgg => "grid_aggregates",
            Dataset::Alerts => "alerts",
            Dataset::Quality => "quality",
            Dataset::OpenData => "open_data",
        }
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Dataset::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// The raw dataset of a device kind.
    pub fn raw(kind: telemetry::DeviceKind) -> Self {
        match kind {
            telemetry::DeviceKind::Parking => Dataset::ParkingRaw,
            telemetry::DeviceKind::Grid => Dataset::GridRaw,
        }
    }

    /// The aggregate dataset of a device kind.
    pub fn aggregates(kind: telemetry::DeviceKind) -> Self {
        match kind {
            telemetry::DeviceKind::Parking => Dataset::ParkingAgg,
            telemetry::DeviceKind::Grid => Dataset::GridAgg,
        }
    }
}

/// A time resolution, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resolution {
    /// Individual readings.
    #[serde(rename = "raw")]
    Raw,
    /// 1 minute.
    #[serde(rename = "1m")]
    M1,
    /// 15 minutes.
    #[serde(rename = "15m")]
    M15,
    /// 1 hour (rolled up from 15-minute rows).
    #[serde(rename = "1h")]
    H1,
    /// 1 day, UTC (rolled up from 15-minute rows).
    #[serde(rename = "1d")]
    D1,
}

impl Resolution {
    /// Stable label (`raw`, `1m`, `15m`, `1h`, `1d`).
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::M1 => "1m",
            Resolution::M15 => "15m",
            Resolution::H1 => "1h",
            Resolution::D1 => "1d",
        }
    }

    /// Parses a label.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "raw" => Resolution::Raw,
            "1m" => Resolution::M1,
            "15m" => Resolution::M15,
            "1h" => Resolution::H1,
            "1d" => Resolution::D1,
            _ => return None,
        })
    }

    /// Length in ms (0 for raw).
    pub fn ms(self) -> i64 {
        match self {
            Resolution::Raw => 0,
            Resolution::M1 => 60_000,
            Resolution::M15 => 900_000,
            Resolution::H1 => 3_600_000,
            Resolution::D1 => 86_400_000,
        }
    }

    /// The resolution of a window length, if it is one of ours.
    pub fn from_ms(ms: i64) -> Option<Self> {
        [
            Resolution::M1,
            Resolution::M15,
            Resolution::H1,
            Resolution::D1,
        ]
        .into_iter()
        .find(|r| r.ms() == ms)
    }
}

/// What a token grants (no secret in here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Public token id (the lookup key).
    pub id: String,
    /// Application the token was issued to.
    pub application: String,
    /// Declared purpose of use.
    pub purpose: String,
    /// Role.
    pub role: Role,
    /// Datasets granted (the role's ceiling applies on top).
    pub datasets: Vec<Dataset>,
    /// Finest resolution the token may request.
    pub finest: Resolution,
    /// Expiry, UTC epoch ms.
    pub expires_ms: i64,
    /// Creation time, UTC epoch ms.
    pub created_ms: i64,
    /// Revocation time, UTC epoch ms, if revoked.
    pub revoked_ms: Option<i64>,
}

impl TokenInfo {
    /// The anonymous caller: public role, open data only.
    pub fn anonymous() -> Self {
        TokenInfo {
            id: "anonymous".into(),
            application: "anonymous".into(),
            purpose: "open data".into(),
            role: Role::Public,
            datasets: vec![Dataset::OpenData],
            finest: Resolution::M1,
            expires_ms: i64::MAX,
            created_ms: 0,
            revoked_ms: None,
        }
    }

    /// Whether the token may read `d` (granted and within the role's ceiling).
    pub fn can(&self, d: Dataset) -> bool {
        self.role.may_hold(d) && self.datasets.contains(&d)
    }

    /// `Ok` when the token may read `d`, else a 403 reason naming the dataset, role and what is missing.
    ///
    /// # Errors
    /// The reason text, for [`crate::AppError::Forbidden`].
    pub fn require(&self, d: Dataset) -> Result<(), String> {
        if !self.role.may_hold(d) {
            let why = match (self.role, d) {
                (_, Dataset::GridRaw) => {
                    "household-level grid readings are restricted to the grid_manager and admin roles"
                }
                (Role::Planner, _) => "planners see aggregates only",
                (Role::Public, _) => "the public role sees the open-data product only",
                _ => "not available to this role",
            };
            return Err(format!(
                "dataset `{}` is not available to role `{}`: {why}",
                d.as_str(),
                self.role.as_str()
            ));
        }
        if !self.datasets.contains(&d) {
            return Err(format!(
                "token `{}` is not granted dataset `{}`",
                self.id,
                d.as_str()
            ));
        }
        Ok(())
    }

    /// `Ok` when `r` is at or above the token's finest resolution.
    ///
    /// # Errors
    /// The reason text, for [`crate::AppError::Forbidden`].
    pub fn require_resolution(&self, r: Resolution) -> Result<(), String> {
        if r < self.finest {
            return Err(format!(
                "token `{}` allows resolution {} or coarser; requested {}",
                self.id,
                self.finest.as_str(),
                r.as_str()
            ));
        }
        Ok(())
    }
}

/// Request to issue a token.
#[derive(Debug, Clone, PartialEq)]
pub struct NewToken {
    /// Application name.
    pub application: String,
    /// Purpose of use.
    pub purpose: String,
    /// Role.
    pub role: Role,
    /// Datasets to grant; each must be within the role's ceiling.
    pub datasets: Vec<Dataset>,
    /// Finest resolution.
    pub finest: Resolution,
    /// Expiry, UTC epoch ms.
    pub expires_ms: i64,
}

/// argon2id cost for newly issued tokens (verification reads the cost from the stored PHC string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for HashCost {
    /// argon2id with the OWASP minimum (19 MiB, 2 iterations, 1 lane).
    fn default() -> Self {
        HashCost {
            m_kib: 19_456,
            t: 2,
            p: 1,
        }
    }
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// Row id (increasing).
    pub seq: i64,
    /// Time of the request, UTC epoch ms.
    pub ts_ms: i64,
    /// Token id (`anonymous` for open data without a token).
    pub token_id: String,
    /// Application of the token.
    pub application: String,
    /// Purpose of the token.
    pub purpose: String,
    /// Role of the token.
    pub role: String,
    /// Dataset read.
    pub dataset: String,
    /// `history`, `export_csv`, `readings`, `live`, `stream`, `alerts`, `quality`, ...
    pub action: String,
    /// The series or filter asked for (e.g. `parking/lot/L1@15m`).
    pub query: String,
    /// Range start, UTC epoch ms (0 when not applicable).
    pub from_ms: i64,
    /// Range end, UTC epoch ms (0 when not applicable).
    pub to_ms: i64,
    /// Rows returned.
    pub rows: i64,
}

/// Token/audit store failures.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Hashing failed.
    #[error("argon2: {0}")]
    Hash(String),
    /// The token request is not allowed (e.g. a dataset beyond the role).
    #[error("invalid token request: {0}")]
    Invalid(String),
}

/// Why a presented token was refused (deliberately without the token text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// Not of the form `cb_<id>_<secret>`.
    #[error("malformed token")]
    Malformed,
    /// No such token id, or the secret does not match.
    #[error("unknown token or wrong secret")]
    Unknown,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
    /// Revoked.
    #[error("token revoked")]
    Revoked,
}

/// Tokens and the audit log in one SQLite file.
pub struct AccessStore {
    conn: Mutex<Connection>,
    cache: Mutex<HashMap<String, (Vec<u8>, i64)>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY,
  phc TEXT NOT NULL,
  application TEXT NOT NULL,
  purpose TEXT NOT NULL,
  role TEXT NOT NULL,
  datasets TEXT NOT NULL,
  finest TEXT NOT NULL,
  expires_ms INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  ts_ms INTEGER NOT NULL,
  token_id TEXT NOT NULL,
  application TEXT NOT NULL,
  purpose TEXT NOT NULL,
  role TEXT NOT NULL,
  dataset TEXT NOT NULL,
  action TEXT NOT NULL,
  query TEXT NOT NULL,
  from_ms INTEGER NOT NULL,
  to_ms INTEGER NOT NULL,
  rows INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts_ms);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
PRAGMA user_version = 1;
";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl AccessStore {
    /// Opens (creating if needed) the SQLite file and its schema; WAL mode.
    ///
    /// # Errors
    /// [`AccessError::Sqlite`].
    pub fn open(path: &Path) -> Result<Self, AccessError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::init(conn)
    }

    /// An in-memory store (unit tests).
    ///
    /// # Errors
    /// [`AccessError::Sqlite`].
    pub fn open_in_memory() -> Result<Self, AccessError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, AccessError> {
        conn.execute_batch(SCHEMA)?;
        Ok(AccessStore {
            conn: Mutex::new(conn),
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a token; returns its info and the token text (shown once, never stored).
    ///
    /// # Errors
    /// [`AccessError::Invalid`] when a dataset is beyond the role or fields are empty; SQLite/hash errors.
    pub fn create_token(
        &self,
        req: &NewToken,
        cost: HashCost,
    ) -> Result<(TokenInfo, String), AccessError> {
        if req.application.trim().is_empty() || req.purpose.trim().is_empty() {
            return Err(AccessError::Invalid(
                "application and purpose must not be empty".into(),
            ));
        }
        if let Some(d) = req.datasets.iter().find(|d| !req.role.may_hold(**d)) {
            return Err(AccessError::Invalid(format!(
                "role {} may not be granted dataset {}",
                req.role.as_str(),
                d.as_str()
            )));
        }
        let mut idb = [0u8; 8];
        rand::fill(&mut idb);
        let id: String = idb.iter().map(|b| format!("{b:02x}")).collect();
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        let secret_txt = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        let mut salt = [0u8; 16];
        rand::fill(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| AccessError::Hash(e.to_string()))?;
        let params = Params::new(cost.m_kib, cost.t, cost.p, None)
            .map_err(|e| AccessError::Hash(e.to_string()))?;
        let phc = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(secret_txt.as_bytes(), &salt)
            .map_err(|e| AccessError::Hash(e.to_string()))?
            .to_string();
        let mut datasets = req.datasets.clone();
        datasets.sort();
        datasets.dedup();
        let info = TokenInfo {
            id: id.clone(),
            application: req.application.clone(),
            purpose: req.purpose.clone(),
            role: req.role,
            datasets,
            finest: req.finest,
            expires_ms: req.expires_ms,
            created_ms: now_ms(),
            revoked_ms: None,
        };
        let ds = serde_json::to_string(&info.datasets).unwrap_or_else(|_| "[]".into());
        self.conn().execute(
            "INSERT INTO tokens (id, phc, application, purpose, role, datasets, finest, expires_ms, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                id,
                phc,
                info.application,
                info.purpose,
                info.role.as_str(),
                ds,
                info.finest.as_str(),
                info.expires_ms,
                info.created_ms
            ],
        )?;
        Ok((info, format!("cb_{id}_{secret_txt}")))
    }

    fn row_to_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<(TokenInfo, String)> {
        let role: String = r.get(4)?;
        let ds: String = r.get(5)?;
        let finest: String = r.get(6)?;
        Ok((
            TokenInfo {
                id: r.get(0)?,
                application: r.get(2)?,
                purpose: r.get(3)?,
                role: Role::parse(&role).unwrap_or(Role::Public),
                datasets: serde_json::from_str(&ds).unwrap_or_default(),
                finest: Resolution::parse(&finest).unwrap_or(Resolution::D1),
                expires_ms: r.get(7)?,
                created_ms: r.get(8)?,
                revoked_ms: r.get(9)?,
            },
            r.get(1)?,
        ))
    }

    const COLS: &'static str =
        "id, phc, application, purpose, role, datasets, finest, expires_ms, created_ms, revoked_ms";

    /// All tokens (no secrets), oldest first.
    ///
    /// # Errors
    /// [`AccessError::Sqlite`].
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, AccessError> {
        let c = self.conn();
        let mut st = c.prepare(&format!(
            "SELECT {} FROM tokens ORDER BY created_ms, id",
            Self::COLS
        ))?;
        let rows = st
            .query_map([], Self::row_to_info)?
            .map(|r| r.map(|x| x.0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Revokes a token; returns false when no such (unrevoked) token exists.
    ///
    /// # Errors
    /// [`AccessError::Sqlite`].
    pub fn revoke_token(&self, id: &str, at_ms: i64) -> Result<bool, AccessError> {
        let n = self.conn().execute(
            "UPDATE tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, at_ms],
        )?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(n == 1)
    }

    /// Checks a presented token at time `now_ms`.
    ///
    /// # Errors
    /// `Ok(Err(AuthFailure))` for a refused token; `Err` for storage faults.
    pub fn verify(
        &self,
        token: &str,
        now_ms: i64,
    ) -> Result<Result<TokenInfo, AuthFailure>, AccessError> {
        let Some(rest) = token.strip_prefix("cb_") else {
            return Ok(Err(AuthFailure::Malformed));
        };
        let Some((id, secret)) = rest.split_once('_') else {
            return Ok(Err(AuthFailure::Malformed));
        };
        if id.len() != 16
            || !id.bytes().all(|b| b.is_ascii_hexdigit())
            || secret.is_empty()
            || secret.len() > 128
        {
            return Ok(Err(AuthFailure::Malformed));
        }
        let row = {
            let c = self.conn();
            c.query_row(
                &format!("SELECT {} FROM tokens WHERE id = ?1", Self::COLS),
                [id],
                Self::row_to_info,
            )
            .optional()?
        };
        let Some((info, phc)) = row else {
            // Spend comparable time on unknown ids so ids cannot be probed by timing.
            let _ = argon2_check(&phc_dummy(), secret);
            return Ok(Err(AuthFailure::Unknown));
        };
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(id)
                .filter(|(_, until)| *until > now_ms)
                .map(|(s, _)| bool::from(s.as_slice().ct_eq(secret.as_bytes())))
        };
        let ok = match cached {
            Some(true) => true,
            _ => {
                let ok = argon2_check(&phc, secret);
                if ok {
                    let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                    if cache.len() >= VERIFY_CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(
                        id.to_string(),
                        (secret.as_bytes().to_vec(), now_ms + VERIFY_CACHE_TTL_MS),
                    );
                }
                ok
            }
        };
        if !ok {
            return Ok(Err(AuthFailure::Unknown));
        }
        if info.revoked_ms.is_some() {
            return Ok(Err(AuthFailure::Revoked));
        }
        if now_ms >= info.expires_ms {
            return Ok(Err(AuthFailure::Expired));
        }
        Ok(Ok(info))
    }

    /// Appends an audit row (its `seq` is assigned here); returns the new row count.
    ///
    /// # Errors
    /// [`AccessError::Sqlite`].
    pub fn audit(&self, row: &AuditRow) -> Result<i64, AccessError> {
        let c = self.conn();
        c.execute(
            "INSERT INTO audit (ts_ms, token_id, application, purpose, role, dataset, action, query, from_ms, to_ms, rows)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                row.ts_ms,
                row.token_id,
                row.application,
                row.purpose,
                row.role,
                row.dataset,
                row.action,
                row.query,
                row.from_ms,
                row.to_ms,
                row.rows
            ],
        )?;
        Ok(c.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?)
    }

    /// Audit rows with `ts_ms >= since_ms`, newest first, at most `limit`.
    ///
    /// # Errors
    /// [`AccessError::Sqlite`].
    pub fn audit_rows(&self, since_ms: i64, limit: usize) -> Result<Vec<AuditRow>, AccessError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT seq, ts_ms, token_id, application, purpose, role, dataset, action, query, from_ms, to_ms, rows
             FROM audit WHERE ts_ms >= ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = st
            .query_map(params![since_ms, limit as i64], |r| {
                Ok(AuditRow {
                    seq: r.get(0)?,
                    ts_ms: r.get(1)?,
                    token_id: r.get(2)?,
                    application: r.get(3)?,
                    purpose: r.get(4)?,
                    role: r.get(5)?,
                    dataset: r.get(6)?,
                    action: r.get(7)?,
                    query: r.get(8)?,
                    from_ms: r.get(9)?,
                    to_ms: r.get(10)?,
                    rows: r.get(11)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Number of audit rows.
    ///
    /// # Errors
    /// [`AccessError::Sqlite`].
    pub fn audit_count(&self) -> Result<i64, AccessError> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?)
    }

    /// Runs raw SQL against the store (tests use it to prove the audit log refuses changes).
    ///
    /// # Errors
    /// [`AccessError::Sqlite`].
    pub fn execute_sql(&self, sql: &str) -> Result<usize, AccessError> {
        Ok(self.conn().execute(sql, [])?)
    }
}

fn phc_dummy() -> String {
    // A fixed, cheap PHC string for equal-work rejection of unknown ids.
    "$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$wLsI0rzf5Y1n+2FH3BkKfUJBtcfvRIszENvVuDyl8Zg".into()
}

/// Recomputes argon2 of `secret` with the salt and cost in `phc`, compares outputs in constant time.
fn argon2_check(phc: &str, secret: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let Ok(computed) = Argon2::default().hash_password_customized(
        secret.as_bytes(),
        Some(parsed.algorithm),
        parsed.version,
        params,
        salt,
    ) else {
        return false;
    };
    match computed.hash {
        Some(out) => bool::from(out.as_bytes().ct_eq(expected.as_bytes())),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> HashCost {
        HashCost {
            m_kib: 256,
            t: 1,
            p: 1,
        }
    }

    #[test]
    fn token_roundtrip_expiry_revocation() {
        let s = AccessStore::open_in_memory().unwrap();
        let req = NewToken {
            application: "app".into(),
            purpose: "test".into(),
            role: Role::Planner,
            datasets: vec![Dataset::ParkingAgg],
            finest: Resolution::M15,
            expires_ms: 2_000,
        };
        let (info, tok) = s.create_token(&req, cheap()).unwrap();
        assert_eq!(s.verify(&tok, 1_000).unwrap().unwrap(), info);
        // Second check hits the cache and still agrees.
        assert!(s.verify(&tok, 1_001).unwrap().is_ok());
        let mut wrong = tok.clone();
        wrong.pop();
        wrong.push('#');
        assert_eq!(s.verify(&wrong, 1_000).unwrap(), Err(AuthFailure::Unknown));
        assert_eq!(
            s.verify("nope", 1_000).unwrap(),
            Err(AuthFailure::Malformed)
        );
        assert_eq!(s.verify(&tok, 2_000).unwrap(), Err(AuthFailure::Expired));
        assert!(s.revoke_token(&info.id, 1_500).unwrap());
        assert_eq!(s.verify(&tok, 1_000).unwrap(), Err(AuthFailure::Revoked));
        assert!(!s.revoke_token(&info.id, 1_600).unwrap());
        // The stored row is a PHC string, not the secret.
        let phc: String = s
            .conn()
            .query_row("SELECT phc FROM tokens", [], |r| r.get(0))
            .unwrap();
        assert!(phc.starts_with("$argon2id$"));
        // Token = `cb_<id>_<secret>`; the URL-safe base64 secret may itself contain `_`.
        let secret = tok.splitn(3, '_').nth(2).unwrap();
        assert_eq!(secret.len(), 43, "32 random bytes, base64 without padding");
        assert!(!phc.contains(secret));
    }

    #[test]
    fn role_ceiling_enforced_at_issue() {
        let s = AccessStore::open_in_memory().unwrap();
        let req = NewToken {
            application: "a".into(),
            purpose: "p".into(),
            role: Role::Planner,
            datasets: vec![Dataset::GridRaw],
            finest: Resolution::M15,
            expires_ms: i64::MAX,
        };
        assert!(matches!(
            s.create_token(&req, cheap()),
            Err(AccessError::Invalid(_))
        ));
    }

    #[test]
    fn audit_is_append_only() {
        let s = AccessStore::open_in_memory().unwrap();
        let row = AuditRow {
            seq: 0,
            ts_ms: 5,
            token_id: "t".into(),
            application: "a".into(),
            purpose: "p".into(),
            role: "planner".into(),
            dataset: "parking_aggregates".into(),
            action: "history".into(),
            query: "q".into(),
            from_ms: 1,
            to_ms: 2,
            rows: 3,
        };
        assert_eq!(s.audit(&row).unwrap(), 1);
        assert!(s.execute_sql("UPDATE audit SET rows = 0").is_err());
        assert!(s.execute_sql("DELETE FROM audit").is_err());
        let got = s.audit_rows(0, 10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].rows, 3);
        assert_eq!(got[0].seq, 1);
    }
}
