// Words for the API's enums, as a person would choose them.

import {
  ArtStyle,
  CharacterStyle,
  ColorPalette,
  Composition,
  Job_State,
  LineStyle,
  Mood,
  PageLayout,
  PanelVersion_State,
  ReadingOrder,
} from "./gen/mangakai/v1/common_pb";

export type Choice = [value: number, label: string, hint?: string];

/** The six enum style preferences, in the order the form shows them (notes is the seventh). */
export const STYLE_CHOICES: { field: string; label: string; choices: Choice[] }[] = [
  {
    field: "artStyle",
    label: "Art style",
    choices: [
      [ArtStyle.SHONEN, "Shōnen", "bold action, high energy"],
      [ArtStyle.SHOJO, "Shōjo", "delicate, expressive"],
      [ArtStyle.SEINEN, "Seinen", "mature, detailed"],
      [ArtStyle.CHIBI, "Chibi", "cute, small proportions"],
      [ArtStyle.WEBTOON, "Webtoon", "clean digital colour"],
      [ArtStyle.CLASSIC, "Classic", "vintage manga"],
    ],
  },
  {
    field: "mood",
    label: "Mood",
    choices: [
      [Mood.LIGHTHEARTED, "Lighthearted"],
      [Mood.DRAMATIC, "Dramatic"],
      [Mood.DARK, "Dark"],
      [Mood.ROMANTIC, "Romantic"],
      [Mood.ACTION, "Action"],
      [Mood.MYSTERIOUS, "Mysterious"],
      [Mood.PEACEFUL, "Peaceful"],
    ],
  },
  {
    field: "colorPalette",
    label: "Colour palette",
    choices: [
      [ColorPalette.BLACK_AND_WHITE, "Black and white"],
      [ColorPalette.FULL_COLOR, "Full colour"],
      [ColorPalette.SEPIA, "Sepia"],
      [ColorPalette.PASTEL, "Pastel"],
      [ColorPalette.VIBRANT, "Vibrant"],
      [ColorPalette.MUTED, "Muted"],
    ],
  },
  {
    field: "characterStyle",
    label: "Characters",
    choices: [
      [CharacterStyle.DETAILED, "Detailed"],
      [CharacterStyle.SIMPLE, "Simple"],
      [CharacterStyle.CHIBI, "Chibi"],
      [CharacterStyle.REALISTIC, "Realistic"],
      [CharacterStyle.STYLIZED, "Stylized"],
    ],
  },
  {
    field: "lineStyle",
    label: "Line work",
    choices: [
      [LineStyle.CLEAN, "Clean"],
      [LineStyle.SKETCHY, "Sketchy"],
      [LineStyle.BOLD, "Bold"],
      [LineStyle.FINE, "Fine"],
      [LineStyle.BRUSH, "Brush"],
    ],
  },
  {
    field: "composition",
    label: "Composition",
    choices: [
      [Composition.DYNAMIC, "Dynamic"],
      [Composition.BALANCED, "Balanced"],
      [Composition.CINEMATIC, "Cinematic"],
      [Composition.CLOSE_UP, "Close-up"],
      [Composition.WIDE, "Wide"],
    ],
  },
];

export const LAYOUTS: Choice[] = [
  [PageLayout.CLASSIC, "Classic", "five or six panels of varied sizes per page"],
  [PageLayout.FOUR_KOMA, "4-koma", "four equal panels stacked"],
  [PageLayout.WEBTOON, "Webtoon", "one long vertical strip"],
  [PageLayout.SINGLE, "One per page", "a full page for each panel"],
];

export const READING_ORDERS: Choice[] = [
  [ReadingOrder.RIGHT_TO_LEFT, "Right to left", "as manga are read"],
  [ReadingOrder.LEFT_TO_RIGHT, "Left to right", "as Western comics are read"],
];

export const JOB_STATES: Record<Job_State, string> = {
  [Job_State.UNSPECIFIED]: "Unknown",
  [Job_State.QUEUED]: "Queued",
  [Job_State.PLANNING]: "Planning scenes",
  [Job_State.RENDERING]: "Drawing panels",
  [Job_State.COMPLETED]: "Finished",
  [Job_State.FAILED]: "Failed",
  [Job_State.CANCELLED]: "Cancelled",
};

export const PANEL_STATES: Record<PanelVersion_State, string> = {
  [PanelVersion_State.UNSPECIFIED]: "Waiting",
  [PanelVersion_State.PENDING]: "Waiting",
  [PanelVersion_State.RENDERING]: "Drawing…",
  [PanelVersion_State.SUCCEEDED]: "Drawn",
  [PanelVersion_State.FAILED]: "Failed",
  [PanelVersion_State.CANCELLED]: "Cancelled",
};

/** Machine-readable names for data attributes (tests and styling). */
export function jobStateName(state: Job_State): string {
  return Job_State[state] ?? "UNSPECIFIED";
}

export function panelStateName(state: PanelVersion_State): string {
  return PanelVersion_State[state] ?? "UNSPECIFIED";
}

export function isActive(state: Job_State): boolean {
  return state === Job_State.QUEUED || state === Job_State.PLANNING || state === Job_State.RENDERING;
}
