//! `graphql/global.graphql` is the checked-in SDL of the served schema.
//! `UPDATE_SDL=1 cargo test -p global --test schema_file` rewrites it.

#[test]
fn checked_in_sdl_matches_the_served_schema() {
    let sdl = global::graphql::schema(None, &shared::server::Limits::default(), true).sdl();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../graphql/global.graphql");
    if std::env::var("UPDATE_SDL").is_ok() {
        std::fs::write(path, &sdl).expect("write SDL");
        return;
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == sdl,
        "graphql/global.graphql is out of date: run UPDATE_SDL=1 cargo test -p global --test schema_file"
    );
}
