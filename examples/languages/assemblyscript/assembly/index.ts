// A Corral task in AssemblyScript: its arguments, one environment variable, stdout, and an
// exit code. The WASI shim maps `process` and `console` onto WASI preview 1 calls.
const args = process.argv;
const who = process.env.has("WHO") ? process.env.get("WHO") : "nobody";
console.log("hello from AssemblyScript, " + who + ", argv[0]=" + args[0] + " argc=" + args.length.toString());
if (args.length > 1) {
  process.exit(I32.parseInt(args[1]));
}
