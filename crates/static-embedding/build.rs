fn main() {
    sekator_fingerprint::emit();
}
