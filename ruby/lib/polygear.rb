# frozen_string_literal: true

# polygear: a fast Gearman client, worker, admin client and job server for
# Ruby, backed by one Rust implementation shared with Python and Node.js.
#
#   require "polygear"
#   client = Polygear::Client.new(servers: ["127.0.0.1:4730"])
#   client.submit("reverse", "hello")   # => "olleh" (ASCII-8BIT)
#
# See Polygear::Client, Polygear::Worker, Polygear::Admin, Polygear::Server.
module Polygear
end

require_relative "polygear/version"
require_relative "polygear/errors" # before the extension, which raises these classes
begin
  # a precompiled, per-Ruby-version layout (not produced by this gem today)
  require "polygear/#{RUBY_VERSION[/\d+\.\d+/]}/polygear_ext"
rescue LoadError
  require "polygear/polygear_ext" # compiled by `gem install`
end
require_relative "polygear/util"
require_relative "polygear/client"
require_relative "polygear/worker"
require_relative "polygear/admin"
require_relative "polygear/server"
