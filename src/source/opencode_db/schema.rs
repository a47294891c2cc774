//! The schema gate: which OpenCode database schemas this oc-sync may write into.
//!
//! OpenCode records every migration it ran in the `migration` table (`id` = sortable timestamp +
//! name). Reads are always allowed; writes require the exact list of ids of a known release.

use rusqlite::{Connection, OptionalExtension};

/// The migration ids of OpenCode 1.18.33, in order (`SELECT id FROM migration ORDER BY id`).
pub const KNOWN_MIGRATIONS: &[&str] = &[
    "20260127222353_familiar_lady_ursula",
    "20260211171708_add_project_commands",
    "20260213144116_wakeful_the_professor",
    "20260225215848_workspace",
    "20260227213759_add_session_workspace_id",
    "20260228203230_blue_harpoon",
    "20260303231226_add_workspace_fields",
    "20260309230000_move_org_to_state",
    "20260312043431_session_message_cursor",
    "20260323234822_events",
    "20260410174513_workspace-name",
    "20260413175956_chief_energizer",
    "20260423070820_add_icon_url_override",
    "20260427172553_slow_nightmare",
    "20260428004200_add_session_path",
    "20260501142318_next_venus",
    "20260504145000_add_sync_owner",
    "20260507164347_add_workspace_time",
    "20260510033149_session_usage",
    "20260511000411_data_migration_state",
    "20260511173437_session-metadata",
    "20260601010001_normalize_storage_paths",
    "20260601202201_amazing_prowler",
    "20260602002951_lowly_union_jack",
    "20260602182828_add_project_directories",
    "20260603001617_session_message_projection_indexes",
    "20260603040000_session_message_projection_order",
    "20260603141458_session_input_inbox",
    "20260603160727_jittery_ezekiel_stane",
    "20260604172448_event_sourced_session_input",
    "20260605003541_add_session_context_snapshot",
    "20260605042240_add_context_epoch_agent",
    "20260611035744_credential",
    "20260611192811_lush_chimera",
    "20260612174303_project_dir_strategy",
    "20260622142730_simplify_session_context_epoch",
    "20260622170816_reset_v2_session_state",
    "20260622202450_simplify_session_input",
];

/// The OpenCode release whose schema [`KNOWN_MIGRATIONS`] describes.
pub const KNOWN_OPENCODE_VERSION: &str = "1.18.33";

/// What [`check_schema`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// The `migration` ids are exactly [`KNOWN_MIGRATIONS`]: reads and writes are allowed.
    Known,
    /// Another list of migrations (newer or older OpenCode): reads only.
    Unknown { last: String, count: usize },
    /// No `migration` table, or an empty one: OpenCode has not created its schema.
    Missing,
}

/// The last known migration id (named in error messages).
pub fn last_known_migration() -> &'static str {
    KNOWN_MIGRATIONS[KNOWN_MIGRATIONS.len() - 1]
}

/// Compares the database's `migration` ids with [`KNOWN_MIGRATIONS`].
pub fn check_schema(conn: &Connection) -> rusqlite::Result<SchemaStatus> {
    let has_table: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migration'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if has_table.is_none() {
        return Ok(SchemaStatus::Missing);
    }
    let mut stmt = conn.prepare("SELECT CAST(id AS TEXT) FROM migration ORDER BY id")?;
    let ids = stmt
        .query_map([], |r| r.get::<_, Option<String>>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let ids: Vec<String> = ids.into_iter().map(Option::unwrap_or_default).collect();
    if ids.is_empty() {
        return Ok(SchemaStatus::Missing);
    }
    if ids.len() == KNOWN_MIGRATIONS.len() && ids.iter().zip(KNOWN_MIGRATIONS).all(|(a, b)| a == b)
    {
        return Ok(SchemaStatus::Known);
    }
    Ok(SchemaStatus::Unknown {
        last: ids.last().cloned().unwrap_or_default(),
        count: ids.len(),
    })
}
