//! The migrations are embedded at compile time (refinery's
//! `embed_migrations!`); rebuild whenever one is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
