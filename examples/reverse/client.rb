# Ruby client for `reverse`: sends each argument (or a greeting) and prints the answer.
# Any `reverse` worker will do, whatever its language.
#
# Run: ruby client.rb HOST:PORT [TEXT ...]
require "polygear"

server = ARGV.fetch(0, "127.0.0.1:4730")
texts = ARGV.drop(1)
texts = ["Hello, Gearman!"] if texts.empty?

# timeout: give up on a job after 10 s instead of waiting for a worker forever
client = Polygear::Client.new(servers: [server], timeout: 10)
begin
  texts.each do |text|
    answer = client.submit("reverse", text).force_encoding(Encoding::UTF_8) # results are binary
    puts "  [ruby client] reverse(#{text.inspect}) = #{answer.inspect}"
  end
rescue Polygear::Error => e
  warn "  [ruby client] #{e.class}: #{e.message}"
  exit 1
ensure
  client.close
end
