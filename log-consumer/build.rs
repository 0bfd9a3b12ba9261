// The migrations are embedded in the binary (`embed_migrations!`); without this, a new
// migration folder would not make cargo rebuild the consumer, and it would start
// without it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
