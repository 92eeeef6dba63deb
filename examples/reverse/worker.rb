# Ruby worker for `reverse`, the "hello world" of the Gearman talks.
#
# The job's data is UTF-8 text; the result is the same text backwards
# (by characters, not bytes, so "ünï" comes back as "ïnü").
#
# Run: ruby worker.rb HOST:PORT     (Ctrl-C to stop)
require "polygear"

server = ARGV.fetch(0, "127.0.0.1:4730")
worker = Polygear::Worker.new(servers: [server])

worker.register("reverse") do |job|
  text = job.data.dup.force_encoding(Encoding::UTF_8) # job data arrives as binary
  puts "  [ruby worker] reversing #{text.inspect}"
  $stdout.flush
  text.reverse # String#reverse works on characters
end

puts "  [ruby worker] ready on #{server}"
$stdout.flush
worker.work # until Ctrl-C / SIGTERM; a running job finishes first
