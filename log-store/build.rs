// The migrations are embedded in the library (`embed_migrations!`); without this, a new
// migration folder would not make cargo rebuild it, and the consumer would start
// without it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
