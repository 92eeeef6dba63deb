# frozen_string_literal: true

# Builds the native part of the polygear gem with cargo, using only the
# standard library's mkmf (no rb_sys / rake-compiler gems needed).
#
# Environment:
#   CARGO                   cargo to use (default: from PATH, then ~/.cargo/bin)
#   CARGO_TARGET_DIR        shared build dir (kept after install; default: a
#                           temporary dir next to this file, removed after install)
#   POLYGEAR_CARGO_PROFILE  release (default) or dev
require "mkmf"
require "rbconfig"

cargo = ENV["CARGO"] || find_executable("cargo") ||
        [File.join(Dir.home, ".cargo", "bin", "cargo")].find { |c| File.executable?(c) }
abort "polygear: cargo not found; install Rust (https://rustup.rs) or set CARGO=/path/to/cargo" unless cargo

ext_dir   = File.expand_path(__dir__)
gem_root  = File.expand_path("../../..", ext_dir)
crate_dir = File.join(gem_root, "bindings", "ruby")
manifest  = File.join(crate_dir, "Cargo.toml")
abort "polygear: #{manifest} is missing (broken gem?)" unless File.file?(manifest)

# In the installed gem the crates form their own workspace, rooted at the gem's folder:
# cargo then uses the repository's lockfile the gem carries there (the same dependency
# versions), and a workspace further up (a checkout the gem was installed under, say a
# GEM_HOME in its build folder) is not mistaken for theirs.
root_manifest = File.join(gem_root, "Cargo.toml")
unless File.file?(root_manifest)
  File.write(root_manifest, <<~TOML)
    # Written by polygear's extconf.rb when the gem was installed.
    [workspace]
    resolver = "2"
    members = ["bindings/ruby"]
    # path dependencies only: their tests' dev-dependencies are not in the gem
    exclude = ["core", "server"]
  TOML
end

profile    = ENV.fetch("POLYGEAR_CARGO_PROFILE", "release")
abort "polygear: POLYGEAR_CARGO_PROFILE must be release or dev" unless %w[release dev].include?(profile)
shared     = ENV["CARGO_TARGET_DIR"] && !ENV["CARGO_TARGET_DIR"].empty?
target_dir = shared ? File.expand_path(ENV["CARGO_TARGET_DIR"]) : File.join(ext_dir, "target")
out_dir    = File.join(target_dir, profile == "dev" ? "debug" : profile)
libfile    = "libpolygear_rb.so"
dest       = "polygear/polygear_ext.#{RbConfig::CONFIG['DLEXT']}"

File.write("Makefile", <<~MAKE)
  CARGO = #{cargo}
  sitearchdir ?= #{RbConfig::CONFIG['sitearchdir']}
  export CARGO_TARGET_DIR := #{target_dir}
  export RUBY := #{RbConfig.ruby}

  all:
  \t$(CARGO) build --profile #{profile} --manifest-path #{manifest} --lib
  \tmkdir -p polygear && cp #{out_dir}/#{libfile} #{dest}

  # RubyGems runs `make` then `make install`: don't run cargo twice (its
  # environment differs, which would rebuild C dependencies).
  install:
  \ttest -f #{dest} || $(MAKE) all
  \tmkdir -p $(DESTDIR)$(sitearchdir)/polygear
  \tcp #{dest} $(DESTDIR)$(sitearchdir)/#{dest}
  #{shared ? '' : "\trm -rf #{target_dir}"}

  clean:
  \trm -rf polygear

  distclean: clean
  \trm -f Makefile

  .PHONY: all install clean distclean
MAKE
