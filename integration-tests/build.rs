// The tests embed the migrations (`embed_migrations!`, for the test databases):
// without this, a new migration would not make cargo rebuild them.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
