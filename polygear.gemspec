# frozen_string_literal: true

# The gemspec sits at the repository root so the gem can carry the Rust
# sources it compiles: bindings/ruby (the glue crate) and its path
# dependencies bindings/common, core/ and server/ (which keep their relative layout).
require_relative "ruby/lib/polygear/version"

Gem::Specification.new do |s|
  s.name        = "polygear"
  s.version     = Polygear::VERSION
  s.summary     = "Fast Gearman client, worker, admin client and job server (Rust core)"
  s.description = "Gearman for Ruby on one Rust implementation shared with Python and Node.js: " \
                  "pipelined client, concurrent worker with idiomatic blocks, admin API and an " \
                  "embeddable job server. Compiled with cargo at install time."
  s.authors     = ["polygear contributors"]
  s.license     = "MIT"
  s.homepage    = "https://gearman.org"
  s.required_ruby_version = ">= 3.1"
  s.requirements << "Rust toolchain (cargo) and libclang to compile the extension"

  rust_sources = lambda do |dir|
    Dir.glob("#{dir}/**/*", File::FNM_DOTMATCH).select do |f|
      File.file?(f) && f !~ %r{(\A|/)target/} && f !~ /\.(sqlite3|db|so)\z/ && !f.end_with?("/Cargo.lock")
    end
  end
  s.files = Dir["ruby/lib/**/*.rb", "ruby/ext/polygear/extconf.rb", "ruby/README.md"] +
            ["Cargo.lock"] + rust_sources.call("bindings/ruby") + rust_sources.call("bindings/common") +
            rust_sources.call("core") + rust_sources.call("server")
  s.require_paths = ["ruby/lib"]
  s.extensions    = ["ruby/ext/polygear/extconf.rb"]
  s.extra_rdoc_files = ["ruby/README.md"]
end
