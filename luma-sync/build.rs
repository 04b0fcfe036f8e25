//! Rebuilds the crate when a cloud migration changes (they are embedded by `sqlx::migrate!`).
fn main() {
    println!("cargo:rerun-if-changed=cloud/migrations");
}
