# frozen_string_literal: true

# Builds the platform gem (e.g. polygear-0.1.0-x86_64-linux.gem): the source gem's Ruby
# files plus an extension compiled beforehand, so `gem install` needs neither cargo nor a
# C compiler (the way nokogiri and rb-sys based gems ship). The extension is placed at
# ruby/lib/polygear/<ruby major.minor>/polygear_ext.so, where ruby/lib/polygear.rb looks
# first, and the gem only accepts that Ruby minor version.
#
#   ruby scripts/native-gem.rb EXTENSION.so OUT_DIR       (run by scripts/package.sh)
require "fileutils"
require "rubygems/package"
require "tmpdir"

ext, out_dir = ARGV
abort "usage: ruby scripts/native-gem.rb EXTENSION.so OUT_DIR" unless ext && out_dir && File.file?(ext)
ext = File.expand_path(ext)
out_dir = File.expand_path(out_dir)
root = File.expand_path("..", __dir__)

source = Gem::Specification.load(File.join(root, "polygear.gemspec"))
abort "cannot load polygear.gemspec" unless source
ruby_minor = RUBY_VERSION[/\A\d+\.\d+/]
ext_path = "ruby/lib/polygear/#{ruby_minor}/polygear_ext.#{RbConfig::CONFIG['DLEXT']}"
ruby_files = source.files.select { |f| f.start_with?("ruby/lib/") || f == "ruby/README.md" }

Dir.mktmpdir("polygear-gem") do |stage|
  ruby_files.each do |f|
    FileUtils.mkdir_p(File.join(stage, File.dirname(f)))
    FileUtils.cp(File.join(root, f), File.join(stage, f))
  end
  FileUtils.mkdir_p(File.join(stage, File.dirname(ext_path)))
  FileUtils.cp(ext, File.join(stage, ext_path))

  spec = source.dup
  spec.platform = Gem::Platform.local
  spec.files = ruby_files + [ext_path]
  spec.extensions = []
  spec.requirements = []
  spec.required_ruby_version = "~> #{ruby_minor}.0"
  spec.description = "#{source.description.sub(/ Compiled with cargo at install time\.\z/, '')} " \
                     "Precompiled for #{spec.platform} and Ruby #{ruby_minor}: no Rust toolchain needed."

  Dir.chdir(stage) do
    file = Gem::DefaultUserInteraction.use_ui(Gem::SilentUI.new) { Gem::Package.build(spec) }
    FileUtils.mkdir_p(out_dir)
    FileUtils.mv(file, File.join(out_dir, file))
    puts File.join(out_dir, file)
  end
end
