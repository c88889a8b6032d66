//! The real PostgreSQL and Redis the tests use. Absent servers fail the
//! test loudly: nothing here skips.

use sea_orm::{ConnectionTrait, Database};

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Creates a fresh database and returns its URL.
pub async fn create_database() -> (String, String) {
    let admin = postgres_admin_url();
    let conn = Database::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {admin} ({e}). Start it: \
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    });
    let name = format!("tcp_test_{}", uuid::Uuid::new_v4().simple());
    conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("CREATE DATABASE");
    let _ = conn.close().await;
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(admin);
    (name.clone(), format!("{base}/{name}"))
}

pub async fn drop_databases(names: &[String]) {
    let Ok(conn) = Database::connect(&postgres_admin_url()).await else {
        return;
    };
    for n in names {
        let _ = conn
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
            .await;
    }
    let _ = conn.close().await;
}

/// Checks Redis answers and returns a key prefix no other test uses.
pub async fn redis_prefix() -> String {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis is not reachable at {url} ({e}). Start it: \
             redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no"
            )
        });
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .expect("PING");
    assert_eq!(pong, "PONG");
    format!("tcp-test-{}", uuid::Uuid::new_v4().simple())
}
