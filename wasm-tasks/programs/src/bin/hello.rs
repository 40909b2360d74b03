//! Prints `hello from corral`, followed by the arguments (if any) joined by spaces.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        println!("hello from corral");
    } else {
        println!("hello from corral {}", args.join(" "));
    }
}
