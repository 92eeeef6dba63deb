# frozen_string_literal: true

require_relative "api_tests"

# Every API against the C gearmand (Debian's gearman-job-server).
class TestApiGearmand < Minitest::Test
  include ApiTests

  def server = PolygearTest::Gearmand.instance
end

# Every API against Polygear::Server, the Rust server embedded in this process.
class TestApiEmbedded < Minitest::Test
  include ApiTests

  def server = PolygearTest::Embedded.instance
end
