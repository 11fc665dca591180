// A meeting document's one-line summary; refetchable on its own through Query.node.
import { graphql } from 'relay-runtime';

export const documentLineFragment = graphql`
  fragment DocumentLine_document on MeetingDocument
  @refetchable(queryName: "DocumentLineRefetchQuery") {
    id
    meetingName
    meetingDate
    documentType
    municipality {
      id
      name
      state
    }
  }
`;
