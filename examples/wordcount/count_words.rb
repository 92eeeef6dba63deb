# Ruby worker for the word-count demo: registers `count_words`, like
# count_words.py, so the server spreads the pieces over both languages.
#
# Run: ruby count_words.rb HOST:PORT
require "polygear"

server = ARGV.fetch(0, "127.0.0.1:4730")
worker = Polygear::Worker.new(servers: [server], concurrency: 2)

worker.register("count_words") do |job|
  lines = job.data.force_encoding(Encoding::UTF_8).lines
  lines = [""] if lines.empty?
  counts = Hash.new(0)
  lines.each_with_index do |line, i|
    line.downcase.scan(/[a-z']+/) { |w| counts[w] += 1 }
    job.send_status(i + 1, lines.size)
    sleep 0.15 # pretend each line is hard work, so progress is visible
  end
  total = counts.values.sum
  puts "  [ruby]   counted a piece of #{total} words"
  $stdout.flush
  "# counted by ruby (pid #{Process.pid}): #{total} words\n" +
    counts.map { |w, n| "#{n} #{w}\n" }.join
end

puts "  [ruby]   worker ready on #{server} (2 threads)"
$stdout.flush
worker.work # until SIGINT/SIGTERM: running jobs finish first
puts "  [ruby]   worker stopped"
