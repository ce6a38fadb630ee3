## helpers shared by the layouts' scripts, found as OGC found them (the script's folder, then its parent)
<%def name="mark(what)">
mkdir -p output && echo "${node.instance_name} ${what}" >> output/${what}.txt
</%def>
